"""CSA sparse attention with TileLang kernels: variants, compilation, launch.

Layout (DeepSeek-V4): ``q [B,S,Hq,D]`` bf16 with ``D = 512`` (the rotary dims are part of the dot
product), one shared KV head used as key and value: ``kv_compressed [B,T,D]`` (rows chosen per
token by ``indices [B,S,topk]`` int32, ``-1`` = empty) and ``kv_window [B,S_kv,D]`` (raw KV by
absolute position; token ``s`` sees ``max(0,pos-window+1)..pos`` with ``pos = offset + s``), a
per-head fp32 ``sink [Hq]``. Contract and reference: :mod:`streamindex.csa.reference`.

Variants (:data:`VARIANTS`), all exact to fp32 accumulation:

* ``"seesaw"`` -- warp-specialised, persistent, balanced consumers (:mod:`.tilelang_ws`);
* ``"split"`` -- warp-specialised, persistent, consumer 0 does all of ``Q·KVᵀ``;
* ``"seesaw_grid"`` -- ``"seesaw"`` with one CTA per tile (measures what persistence buys);
* ``"pipelined"`` -- the first kernel, one pipelined loop per CTA (:mod:`.tilelang_pipelined`).

:data:`DEFAULT_VARIANT` is used when none is named and the measured table
(:mod:`.speed_table`) has no entry for the shape. Kernels are compiled on first use and cached
per (variant, Hq, D, padded topk, window, softmax scale, target, grid) in this process and on
disk by TileLang (``TILELANG_CACHE_DIR``; ``tools/csa_devcheck.py precompile`` fills one ahead of
time); sequence lengths, ``T`` and ``S_kv`` are symbolic, so chunked prefill reuses one kernel.
``offset`` travels as a 1-element int32 tensor (no recompilation per chunk).
"""
from __future__ import annotations

import functools

import torch

from .checks import DEFAULT_WINDOW, attention_args

LOG2E = 1.4426950408889634
INT32_MAX = 2**31 - 1

#: name -> (kernel family, options). ``persistent``: one CTA per SM looping over the tiles.
VARIANTS = {
    "seesaw": ("ws", {"schedule": "seesaw", "persistent": True}),
    "split": ("ws", {"schedule": "split", "persistent": True}),
    "seesaw_grid": ("ws", {"schedule": "seesaw", "persistent": False}),
    "pipelined": ("pipelined", {"block_h": 64, "block_i": 64, "num_stages": 2, "threads": 256}),
}
DEFAULT_VARIANT = "seesaw"
BLOCK_I = 64  # KV rows per block in every variant


def tilelang_available() -> tuple[bool, str]:
    """``(ok, reason)``: whether the TileLang kernels can run here (tilelang importable, a CUDA device)."""
    try:
        import tilelang  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        return False, f"tilelang is not importable ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        return False, "tilelang needs a CUDA device"
    return True, ""


def supported(H: int, D: int, dtype: torch.dtype, variant: str = DEFAULT_VARIANT) -> tuple[bool, str]:
    """``(ok, reason)``: whether ``variant`` handles this shape. Every variant takes bf16 and ``Hq``
    a multiple of 64 (wgmma's M per warpgroup); the warp-specialised ones ``D`` a multiple of 128
    up to 512 (each consumer owns ``D/2`` output columns), ``"pipelined"`` a multiple of 64."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if dtype != torch.bfloat16:
        return False, f"the TileLang CSA kernels take bf16, got {dtype}"
    if H % 64:
        return False, f"the TileLang CSA kernels need Hq % 64 == 0, got Hq={H}"
    step = 128 if VARIANTS[variant][0] == "ws" else 64
    if D % step or D > 512:
        return False, f"the TileLang CSA variant {variant!r} needs D % {step} == 0 and D <= 512, got D={D}"
    return True, ""


def padded_topk(variant: str, topk: int, window: int) -> int:
    """Index slots per token the kernel of ``variant`` runs with: ``topk`` rounded up to whole
    blocks of 64 (extra slots hold ``-1``), plus one more block for the seesaw schedule when the
    total block count (top-k blocks + window blocks) would be odd."""
    n = -(-topk // BLOCK_I)
    family, opts = VARIANTS[variant]
    if family == "ws" and opts["schedule"] == "seesaw" and (n + -(-window // BLOCK_I)) % 2:
        n += 1
    return n * BLOCK_I


def cuda_target(device=None) -> dict:
    """The TileLang target of a CUDA device: ``sm_XY``, Hopper as ``sm_90a`` (wgmma, setmaxnreg)."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"kind": "cuda", "arch": f"sm_{major}{minor}" + ("a" if major == 9 else "")}


def pass_configs() -> dict:
    """TileLang pass configuration of every CSA kernel (part of the disk-cache key: keep fixed).
    Fast math (``ex2.approx``); no automatic bounds guards: the indices are range-checked on the
    host (``check_indices``) or trusted indexer output, and every other index is in range by
    construction."""
    import tilelang

    return {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: True,
            tilelang.PassConfigKey.TL_DISABLE_SAFE_MEMORY_ACCESS: True}


def build_prim_func(variant: str, H: int, D: int, topk: int, window: int, scale_log2: float,
                    num_ctas: int | None = None):
    """The uncompiled TileLang kernel of ``variant`` (``topk`` already padded, see :func:`padded_topk`;
    ``num_ctas``: persistent grid size, used by the persistent variants only)."""
    family, opts = VARIANTS[variant]
    if family == "ws":
        from .tilelang_ws import build_ws_kernel

        return build_ws_kernel(H, D, topk, window, scale_log2, schedule=opts["schedule"], block_i=BLOCK_I,
                               num_ctas=num_ctas if opts["persistent"] else None)
    from .tilelang_pipelined import build_pipelined_kernel

    return build_pipelined_kernel(H, D, topk, window, scale_log2, block_h=opts["block_h"], block_i=opts["block_i"],
                                  num_stages=opts["num_stages"], threads=opts["threads"])


@functools.lru_cache(maxsize=None)
def compile_kernel(variant: str, H: int, D: int, topk: int, window: int, scale_log2: float, arch: str,
                   num_ctas: int | None):
    """Compiled kernel (TileLang ``JITKernel``) for a CUDA ``arch`` such as ``"sm_90a"``; needs
    nvcc, not a GPU (a cache filled here is reused on any machine with the same tilelang)."""
    import tilelang

    func = build_prim_func(variant, H, D, topk, window, scale_log2, num_ctas)
    return tilelang.compile(func, out_idx=None, target={"kind": "cuda", "arch": arch}, pass_configs=pass_configs())


def kernel_args(variant: str, H: int, D: int, topk: int, window: int, softmax_scale: float, device) -> tuple:
    """The :func:`compile_kernel` arguments for a call on ``device`` (padding, target, grid)."""
    family, opts = VARIANTS[variant]
    persistent = family == "ws" and opts["persistent"]
    n_sm = torch.cuda.get_device_properties(device).multi_processor_count if persistent else None
    return (variant, H, D, padded_topk(variant, topk, window), window, float(softmax_scale * LOG2E),
            cuda_target(device)["arch"], n_sm)


def sparse_attention_tilelang(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                              window: int = DEFAULT_WINDOW, out: torch.Tensor | None = None,
                              check_indices: bool = True, variant: str | None = None) -> torch.Tensor:
    """CSA sparse attention forward with a TileLang kernel. Arguments and result as
    :func:`streamindex.csa.reference.csa_attention_reference`; bf16, CUDA; ``out`` (contiguous bf16
    ``[B,S,Hq,D]``) receives the result when given. ``variant``: one of :data:`VARIANTS`
    (default :data:`DEFAULT_VARIANT`). Runs on ``q``'s device (a device guard around the launch)."""
    a = attention_args(q, kv_compressed, kv_window, sink, indices, softmax_scale=softmax_scale, offset=offset,
                       window=window, check_indices=check_indices)
    B, S, H, D, T, S_kv, K = a.shape
    variant = DEFAULT_VARIANT if variant is None else variant
    ok, why = supported(H, D, a.q.dtype, variant)
    if not ok:
        raise ValueError(why)
    if a.q.device.type != "cuda":
        raise ValueError(f"the TileLang CSA kernels need CUDA tensors, got {a.q.device}")
    if a.offset + S > INT32_MAX or S_kv > INT32_MAX:
        raise ValueError(f"offset + S = {a.offset + S} must fit the kernels' int32 positions (< 2**31)")
    if B * S * (H // 64) > INT32_MAX:
        raise ValueError(f"B·S·Hq/64 = {B * S * (H // 64)} tiles exceed the kernels' int32 tile index; "
                         "call in query chunks")
    if VARIANTS[variant][0] == "pipelined" and B > 65535:
        raise ValueError(f"the 'pipelined' variant puts the batch on grid y (<= 65,535), got B={B}")
    if out is not None:
        if tuple(out.shape) not in ((B, S, H, D),) + (((S, H, D),) if a.squeeze else ()):
            raise ValueError(f"out must be [B={B}, S={S}, Hq={H}, D={D}], got shape {tuple(out.shape)}")
        if out.dtype != a.q.dtype or out.device != a.q.device or not out.is_contiguous():
            raise ValueError(f"out must be contiguous {a.q.dtype} on {a.q.device}")
    with torch.cuda.device(a.q.device):
        kern = compile_kernel(*kernel_args(variant, H, D, K, a.window, a.softmax_scale, a.q.device))
        Kp = padded_topk(variant, K, a.window)
        idx = a.indices if Kp == K else torch.nn.functional.pad(a.indices, (0, Kp - K), value=-1)
        o = torch.empty(B, S, H, D, dtype=a.q.dtype, device=a.q.device) if out is None else out.view(B, S, H, D)
        off = torch.full((1,), a.offset, dtype=torch.int32, device=a.q.device)  # a fill kernel, no host copy
        kern(a.q, a.kv_compressed, a.kv_window, a.sink, idx, off, o)
    if out is not None:
        return out
    return o.squeeze(0) if a.squeeze else o
