"""Triton fallback of the CSA sparse-attention forward (same contract as the TileLang kernel).

One program per (query head block, token, batch) -- a 1-D grid of ``cdiv(Hq, BH)·S·B`` programs,
so no grid dimension meets CUDA's 65,535 limit on y / z whatever ``S`` is: the token's ``BH`` query heads are the M
dimension of both GEMMs (``[BH, D] x [D, BN]`` then ``[BH, BN] x [BN, D]``), since every query
head of a token reads the same KV rows (one shared KV head). It streams first the ``topk``
compressed rows gathered through ``indices`` (``-1`` slots masked), then the ``window`` raw rows
ending at the token's absolute position (rows before position 0 masked), with an online softmax
in fp32 (base 2) that starts from the sink: ``m = sink·log2 e``, ``l = 1`` -- the sink is a
virtual key with a zero value. bf16/fp16 operands, fp32 accumulation, output in q's dtype.

Under ``TRITON_INTERPRET=1`` (CPU CI) the interpreter has no bf16: inputs are cast to fp32 and the
output cast back.
"""
from __future__ import annotations

import contextlib
import os

import torch

from .checks import DEFAULT_WINDOW, attention_args

LOG2E = 1.4426950408889634
_NEG_BIG = -1.0e30  # finite "minus infinity" for the running max (avoids inf - inf)


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


try:  # Triton reads TRITON_INTERPRET at import: set it before importing this module
    import triton
    import triton.language as tl
    from triton.runtime.errors import OutOfResources
except ImportError:  # pragma: no cover - triton is a Linux dependency
    triton = None


def _kernel():
    if triton is None:
        raise ValueError("the Triton CSA kernel needs triton, which is not installed")
    return _csa_sparse_attn_fwd


if triton is not None:
    @triton.jit
    def _online_softmax_step(q, kv, ok, m, l, acc, scale_log2):
        """One block of keys ``kv [BN, D]`` (``ok``: which rows exist) into the running max ``m``,
        denominator ``l`` and output ``acc`` of the heads ``q [BH, D]`` (base-2 logits)."""
        sc = tl.dot(q, tl.trans(kv)) * scale_log2
        sc = tl.where(ok[None, :], sc, float("-inf"))
        m_new = tl.maximum(m, tl.max(sc, 1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(sc - m_new[:, None])
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(kv.dtype), kv)
        return m_new, l, acc

    @triton.jit
    def _csa_sparse_attn_fwd(Q, KVC, KVW, SINK, IDX, OUT, offset, H, scale_log2,
                             sq_b, sq_s, sq_h, sc_b, sc_t, sw_b, sw_t, si_b, si_s, so_b, so_s, so_h,
                             S, N_HB, TOPK: tl.constexpr, WINDOW: tl.constexpr, D: tl.constexpr,
                             BH: tl.constexpr, BN: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)  # (batch, token, head block), head block fastest
        pid_h = pid % N_HB
        s = (pid // N_HB) % S
        b = pid // (N_HB * S)
        heads = pid_h * BH + tl.arange(0, BH)
        hmask = heads < H
        d = tl.arange(0, D)
        q = tl.load(Q + b * sq_b + s * sq_s + heads[:, None] * sq_h + d[None, :], mask=hmask[:, None], other=0.0)
        sk = tl.load(SINK + heads, mask=hmask, other=float("-inf")) * 1.4426950408889634
        m = tl.maximum(sk, -1.0e30)
        l = tl.exp2(sk - m)
        acc = tl.zeros([BH, D], dtype=tl.float32)
        # top-k compressed rows
        for start in range(0, TOPK, BN):
            offs = start + tl.arange(0, BN)
            idx = tl.load(IDX + b * si_b + s * si_s + offs, mask=offs < TOPK, other=-1)
            ok = idx >= 0
            rows = tl.maximum(idx, 0).to(tl.int64)
            kv = tl.load(KVC + b * sc_b + rows[:, None] * sc_t + d[None, :], mask=ok[:, None], other=0.0)
            m, l, acc = _online_softmax_step(q, kv, ok, m, l, acc, scale_log2)
        # sliding window: absolute positions pos - WINDOW + 1 .. pos
        pos = offset + s
        for start in range(0, WINDOW, BN):
            offs = start + tl.arange(0, BN)
            p_abs = pos - WINDOW + 1 + offs
            ok = (p_abs >= 0) & (offs < WINDOW)
            rows = tl.maximum(p_abs, 0).to(tl.int64)
            kv = tl.load(KVW + b * sw_b + rows[:, None] * sw_t + d[None, :], mask=ok[:, None], other=0.0)
            m, l, acc = _online_softmax_step(q, kv, ok, m, l, acc, scale_log2)
        o = acc / tl.where(l > 0, l, 1.0)[:, None]
        tl.store(OUT + b * so_b + s * so_s + heads[:, None] * so_h + d[None, :], o.to(OUT.dtype.element_ty),
                 mask=hmask[:, None])



DEFAULT_BLOCK_N = 64  # KV rows per step on GPU: 2.9-3.0 ms vs 4.1 ms for 32 (V4-Flash attention, H200)
INTERP_BLOCK_N = 16   # under TRITON_INTERPRET (tiny CPU shapes)
_BN_FALLBACK: dict = {}  # (topk, window, D, BH, dtype, launch opts) -> KV block that fits in shared memory


def _next_pow2(x: int) -> int:
    return 1 << (max(1, x) - 1).bit_length()


def sparse_attention_triton(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                            window: int = DEFAULT_WINDOW, out: torch.Tensor | None = None,
                            check_indices: bool = True, block_h: int | None = None, block_n: int | None = None,
                            num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """CSA sparse attention forward in Triton. Arguments and result as
    :func:`streamindex.csa.reference.csa_attention_reference` (output in q's dtype); ``out``
    (``[B,S,Hq,D]``, q's dtype, contiguous) receives the result when given. ``D`` must be a power
    of two (V4: 512). CUDA tensors (launched on their device, whatever the current one is), or CPU
    tensors under ``TRITON_INTERPRET=1``."""
    a = attention_args(q, kv_compressed, kv_window, sink, indices, softmax_scale=softmax_scale, offset=offset,
                       window=window, check_indices=check_indices)
    B, S, H, D, T, S_kv, K = a.shape
    if D & (D - 1):
        raise ValueError(f"the Triton CSA kernel needs a power-of-two head dim, got D={D}")
    if a.q.device.type != "cuda" and not _interpreted():
        raise ValueError(f"the Triton CSA kernel needs CUDA tensors (or TRITON_INTERPRET=1), got {a.q.device}")
    out_dtype = a.q.dtype
    if out is not None:
        if tuple(out.shape) != (B, S, H, D) and not (a.squeeze and tuple(out.shape) == (S, H, D)):
            raise ValueError(f"out must be [B={B}, S={S}, Hq={H}, D={D}], got shape {tuple(out.shape)}")
        if out.dtype != out_dtype or out.device != a.q.device or not out.is_contiguous():
            raise ValueError(f"out must be contiguous {out_dtype} on {a.q.device}")
    qq, kvc, kvw = a.q, a.kv_compressed, a.kv_window
    interp = _interpreted()
    if interp and qq.dtype != torch.float32:
        qq, kvc, kvw = qq.float(), kvc.float(), kvw.float()
    o = torch.empty(B, S, H, D, dtype=qq.dtype, device=qq.device) if (out is None or interp) else out.view(B, S, H, D)
    BH = block_h or max(16, min(64, _next_pow2(H)))
    BN = block_n or (INTERP_BLOCK_N if interp else DEFAULT_BLOCK_N)
    kern = _kernel()
    n_hb = triton_cdiv(H, BH)
    if n_hb * S * B > 2**31 - 1:
        raise ValueError(f"cdiv(Hq, {BH})·S·B = {n_hb * S * B} programs exceed CUDA's grid x limit (2**31 - 1); "
                         "call in query chunks")
    grid = (n_hb * S * B,)
    extra = {} if interp else {"num_warps": num_warps or 8, "num_stages": num_stages or 2}
    key = (K, a.window, D, BH, qq.dtype, tuple(sorted(extra.items())))
    BN = _BN_FALLBACK.get(key, BN) if block_n is None else BN
    guard = torch.cuda.device(qq.device) if qq.device.type == "cuda" else contextlib.nullcontext()
    with guard:
        while True:
            try:
                kern[grid](qq, kvc, kvw, a.sink, a.indices, o, a.offset, H, a.softmax_scale * LOG2E,
                           qq.stride(0), qq.stride(1), qq.stride(2), kvc.stride(0), kvc.stride(1), kvw.stride(0),
                           kvw.stride(1), a.indices.stride(0), a.indices.stride(1), o.stride(0), o.stride(1),
                           o.stride(2), S, n_hb, TOPK=K, WINDOW=a.window, D=D, BH=BH, BN=BN, **extra)
                break
            except OutOfResources:  # shared-memory overflow on some Triton versions / shapes
                if BN <= 16 or block_n is not None:
                    raise
                BN //= 2  # seen with Triton 3.6 at TOPK = BN = 64 (256 KiB of shared memory asked)
                _BN_FALLBACK[key] = BN
    if interp and o.dtype != out_dtype:
        o = o.to(out_dtype)
    if out is not None:
        if o.data_ptr() != out.data_ptr():
            out.view(B, S, H, D).copy_(o)
        return out
    return o.squeeze(0) if a.squeeze else o


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
