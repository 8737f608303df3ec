"""TileLang CSA sparse-attention forward: software-pipelined gather + two GEMMs per KV block.

Layout (DeepSeek-V4): ``q [B,S,Hq,D]`` bf16 with ``D = 512`` (the last 64 rotary dims are just
part of the dot product here), one shared KV head used as key and value: ``kv_compressed [B,T,D]``
(rows chosen per token by ``indices [B,S,topk]`` int32, ``-1`` = empty) and ``kv_window
[B,S_kv,D]`` (raw KV by absolute position; token ``s`` sees ``max(0,pos-window+1)..pos`` with
``pos = offset + s``), a per-head fp32 ``sink [Hq]``.

One CTA per (token, block of ``BH`` heads). All heads of a token read the same KV rows, so the
heads are the M dimension: per KV block of ``BI`` rows the CTA gathers ``[BI, D]`` into shared
memory (row-wise, 16-byte vectors, ``cp.async`` through the ``T.Pipelined`` loop, ``num_stages``
deep), computes ``S = Q·KVᵀ`` (``[BH, BI]``, fp32, wgmma), updates the online softmax in fp32
(base 2, initialised from the sink: ``m = sink·log2 e``, ``l = 1``, i.e. a virtual key with zero
value), then ``O += P·KV`` (``[BH, D]`` fp32 accumulators in registers). Two pipelined loops: the
``topk`` compressed rows, then the window rows. Output bf16.

Compiled lazily on first use and cached per (Hq, D, topk, window, softmax scale, tile config);
sequence lengths, ``T`` and ``S_kv`` are symbolic, so chunked prefill reuses one kernel.
``offset`` travels as a 1-element int32 tensor.
"""
# no `from __future__ import annotations`: TileLang evaluates the prim_func annotations at trace time

import functools

import torch

from .checks import DEFAULT_WINDOW, attention_args

LOG2E = 1.4426950408889634


def tilelang_available() -> tuple[bool, str]:
    """``(ok, reason)``: whether the TileLang kernel can run here."""
    try:
        import tilelang  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        return False, f"tilelang is not importable ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        return False, "tilelang needs a CUDA device"
    return True, ""


def supported(H: int, D: int, dtype: torch.dtype) -> tuple[bool, str]:
    """Shapes the TileLang kernel handles: bf16, ``Hq`` a multiple of 64 (wgmma's M per warpgroup),
    ``D`` a multiple of 64 up to 512."""
    if dtype != torch.bfloat16:
        return False, f"the TileLang CSA kernel takes bf16, got {dtype}"
    if H % 64:
        return False, f"the TileLang CSA kernel needs Hq % 64 == 0, got Hq={H}"
    if D % 64 or D > 512:
        return False, f"the TileLang CSA kernel needs D % 64 == 0 and D <= 512, got D={D}"
    return True, ""


def default_config(H: int, D: int) -> dict:
    """Tile config: 64 heads × 512 dims per CTA (128 fp32 accumulator registers per thread at
    256 threads), 64 KV rows per stage, two stages (Q 64 KiB + 2 × 64 KiB KV + P 8 KiB shared)."""
    BH = 64
    return {"block_h": BH, "block_i": 64, "num_stages": 2, "threads": 256}


@functools.lru_cache(maxsize=None)
def _build(H: int, D: int, topk: int, window: int, scale_log2: float, block_h: int, block_i: int,
           num_stages: int, threads: int, idx_smem: bool = False):
    import tilelang
    import tilelang.language as T

    BH, BI = block_h, block_i
    HB = H // BH
    NI = -(-topk // BI)
    NW = -(-window // BI)
    WSPAN = NW * BI
    dtype, acc_dtype = "bfloat16", "float32"
    neg_big = -1.0e30

    batch = T.dynamic("batch")
    seq = T.dynamic("seq")
    n_comp = T.dynamic("n_comp")
    n_raw = T.dynamic("n_raw")

    @T.prim_func
    def csa_sparse_attn_fwd(
        Q: T.Tensor([batch, seq, H, D], dtype),
        KVC: T.Tensor([batch, n_comp, D], dtype),
        KVW: T.Tensor([batch, n_raw, D], dtype),
        Sink: T.Tensor([H], acc_dtype),
        Idx: T.Tensor([batch, seq, NI * BI], "int32"),
        Off: T.Tensor([1], "int32"),
        Out: T.Tensor([batch, seq, H, D], dtype),
    ):
        with T.Kernel(seq * HB, batch, threads=threads) as (bx, by):
            Q_s = T.alloc_shared([BH, D], dtype)
            KV_s = T.alloc_shared([BI, D], dtype)
            P_s = T.alloc_shared([BH, BI], dtype)
            I_s = T.alloc_shared([NI * BI if idx_smem else 1], "int32")
            acc_s = T.alloc_fragment([BH, BI], acc_dtype)
            acc_o = T.alloc_fragment([BH, D], acc_dtype)
            m_i = T.alloc_fragment([BH], acc_dtype)
            m_prev = T.alloc_fragment([BH], acc_dtype)
            m_blk = T.alloc_fragment([BH], acc_dtype)
            l_i = T.alloc_fragment([BH], acc_dtype)
            l_blk = T.alloc_fragment([BH], acc_dtype)
            alpha = T.alloc_fragment([BH], acc_dtype)

            s_i = bx // HB
            h0 = (bx % HB) * BH
            b_i = by
            pos = Off[0] + s_i

            T.copy(Q[b_i, s_i, h0:h0 + BH, :], Q_s)
            if idx_smem:  # the token's index row, once: the gather then reads shared memory
                T.copy(Idx[b_i, s_i, 0:NI * BI], I_s)
            T.fill(acc_o, 0)
            for h in T.Parallel(BH):
                m_i[h] = T.max(Sink[h0 + h] * LOG2E, neg_big)
                l_i[h] = T.exp2(Sink[h0 + h] * LOG2E - m_i[h])

            # top-k compressed rows, gathered through Idx
            for i in T.Pipelined(NI, num_stages=num_stages):
                if idx_smem:
                    for r, d in T.Parallel(BI, D):
                        KV_s[r, d] = KVC[b_i, T.max(I_s[i * BI + r], 0), d]
                    for h, r in T.Parallel(BH, BI):
                        acc_s[h, r] = T.if_then_else(I_s[i * BI + r] >= 0, 0, -T.infinity(acc_dtype))
                else:
                    for r, d in T.Parallel(BI, D):
                        KV_s[r, d] = KVC[b_i, T.max(Idx[b_i, s_i, i * BI + r], 0), d]
                    for h, r in T.Parallel(BH, BI):
                        acc_s[h, r] = T.if_then_else(Idx[b_i, s_i, i * BI + r] >= 0, 0, -T.infinity(acc_dtype))
                T.gemm(Q_s, KV_s, acc_s, transpose_B=True, policy=T.GemmWarpPolicy.FullCol)
                T.copy(m_i, m_prev)
                T.reduce_max(acc_s, m_blk, dim=1, clear=True)
                for h in T.Parallel(BH):
                    m_i[h] = T.max(m_prev[h], m_blk[h] * scale_log2)
                    alpha[h] = T.exp2(m_prev[h] - m_i[h])
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.exp2(acc_s[h, r] * scale_log2 - m_i[h])
                T.reduce_sum(acc_s, l_blk, dim=1)
                for h in T.Parallel(BH):
                    l_i[h] = l_i[h] * alpha[h] + l_blk[h]
                for h, d in T.Parallel(BH, D):
                    acc_o[h, d] = acc_o[h, d] * alpha[h]
                T.copy(acc_s, P_s)
                T.gemm(P_s, KV_s, acc_o, policy=T.GemmWarpPolicy.FullCol)

            # sliding window: absolute positions pos - WSPAN + 1 .. pos (those < pos-window+1 or < 0 masked)
            for j in T.Pipelined(NW, num_stages=num_stages):
                for r, d in T.Parallel(BI, D):
                    KV_s[r, d] = KVW[b_i, T.max(pos - WSPAN + 1 + j * BI + r, 0), d]
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.if_then_else(
                        (pos - WSPAN + 1 + j * BI + r >= 0) & (j * BI + r >= WSPAN - window), 0,
                        -T.infinity(acc_dtype))
                T.gemm(Q_s, KV_s, acc_s, transpose_B=True, policy=T.GemmWarpPolicy.FullCol)
                T.copy(m_i, m_prev)
                T.reduce_max(acc_s, m_blk, dim=1, clear=True)
                for h in T.Parallel(BH):
                    m_i[h] = T.max(m_prev[h], m_blk[h] * scale_log2)
                    alpha[h] = T.exp2(m_prev[h] - m_i[h])
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.exp2(acc_s[h, r] * scale_log2 - m_i[h])
                T.reduce_sum(acc_s, l_blk, dim=1)
                for h in T.Parallel(BH):
                    l_i[h] = l_i[h] * alpha[h] + l_blk[h]
                for h, d in T.Parallel(BH, D):
                    acc_o[h, d] = acc_o[h, d] * alpha[h]
                T.copy(acc_s, P_s)
                T.gemm(P_s, KV_s, acc_o, policy=T.GemmWarpPolicy.FullCol)

            for h, d in T.Parallel(BH, D):
                acc_o[h, d] = T.if_then_else(l_i[h] > 0, acc_o[h, d] / l_i[h], 0)
            T.copy(acc_o, Q_s)
            T.copy(Q_s, Out[b_i, s_i, h0:h0 + BH, :])

    return tilelang.compile(csa_sparse_attn_fwd, out_idx=None, target=_target(),
                            pass_configs={tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: True})


def _target() -> dict:
    """The CUDA target of the current device; Hopper gets ``sm_90a`` (wgmma)."""
    major, minor = torch.cuda.get_device_capability()
    return {"kind": "cuda", "arch": f"sm_{major}{minor}" + ("a" if major == 9 else "")}


def sparse_attention_tilelang(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                              window: int = DEFAULT_WINDOW, out: torch.Tensor | None = None,
                              check_indices: bool = True, config: dict | None = None) -> torch.Tensor:
    """CSA sparse attention forward with the TileLang kernel. Arguments and result as
    :func:`streamindex.csa.reference.csa_attention_reference`; bf16 only, CUDA only; ``out``
    (contiguous bf16 ``[B,S,Hq,D]``) receives the result when given. ``config`` overrides
    :func:`default_config` (``block_h``, ``block_i``, ``num_stages``, ``threads``)."""
    a = attention_args(q, kv_compressed, kv_window, sink, indices, softmax_scale=softmax_scale, offset=offset,
                       window=window, check_indices=check_indices)
    B, S, H, D, T, S_kv, K = a.shape
    ok, why = supported(H, D, a.q.dtype)
    if not ok:
        raise ValueError(why)
    if a.q.device.type != "cuda":
        raise ValueError(f"the TileLang CSA kernel needs CUDA tensors, got {a.q.device}")
    cfg = dict(default_config(H, D))
    cfg.update(config or {})
    pad = (-K) % int(cfg["block_i"])  # topk padded to whole KV blocks with -1 slots (one kernel per padded topk)
    kern = _build(H, D, K + pad, a.window, float(a.softmax_scale * LOG2E), int(cfg["block_h"]),
                  int(cfg["block_i"]), int(cfg["num_stages"]), int(cfg["threads"]), bool(cfg.get("idx_smem", False)))
    idx = a.indices
    if pad:
        idx = torch.nn.functional.pad(idx, (0, pad), value=-1)
    if out is None:
        o = torch.empty(B, S, H, D, dtype=a.q.dtype, device=a.q.device)
    else:
        if tuple(out.shape) not in ((B, S, H, D),) + (((S, H, D),) if a.squeeze else ()):
            raise ValueError(f"out must be [B={B}, S={S}, Hq={H}, D={D}], got shape {tuple(out.shape)}")
        if out.dtype != a.q.dtype or out.device != a.q.device or not out.is_contiguous():
            raise ValueError(f"out must be contiguous {a.q.dtype} on {a.q.device}")
        o = out.view(B, S, H, D)
    off = torch.full((1,), a.offset, dtype=torch.int32, device=a.q.device)  # a fill kernel, no host copy
    kern(a.q, a.kv_compressed, a.kv_window, a.sink, idx, off, o)
    if out is not None:
        return out
    return o.squeeze(0) if a.squeeze else o
