"""``sparse_attention``: pick a CSA sparse-attention implementation and run it.

Implementations (same contract, see :mod:`streamindex.csa.reference`):

* ``"tilelang"`` -- a TileLang kernel (CUDA, bf16, ``Hq % 64 == 0``, ``D`` a multiple of 128 up to
  512); ``"tilelang:<variant>"`` names one of :data:`streamindex.csa.attention_tilelang.VARIANTS`,
  plain ``"tilelang"`` the fastest measured variant for the shape (else the default variant);
* ``"triton"``   -- the Triton fallback (CUDA, or CPU under ``TRITON_INTERPRET=1``; power-of-two ``D``);
* ``"reference"`` -- the dense masked torch reference (any device; small sizes);
* ``"auto"``     -- :func:`choose_impl`: the fastest implementation *measured* for the shape
  (:mod:`streamindex.csa.speed_table`) among those that can run here; without a measurement
  the default: TileLang's default variant where it is importable and supports the shape, else
  Triton where it can run, else the reference.
"""
from __future__ import annotations

import os

import torch

from .checks import DEFAULT_WINDOW

ATTN_IMPLS = ("auto", "tilelang", "triton", "reference")


def topk_bucket(topk: int) -> int:
    """The speed table's topk key: the smallest power of two >= ``topk`` (at least 64)."""
    return max(64, 1 << (max(1, int(topk)) - 1).bit_length())


def _check_name(attn_impl) -> None:
    from .attention_tilelang import VARIANTS

    ok = isinstance(attn_impl, str) and (attn_impl in ATTN_IMPLS or (
        attn_impl.startswith("tilelang:") and attn_impl.split(":", 1)[1] in VARIANTS))
    if not ok:
        raise ValueError(f"attn_impl must be one of {ATTN_IMPLS} or 'tilelang:<variant>' with a variant in "
                         f"{sorted(VARIANTS)}, got {attn_impl!r}")


def runnable(device: torch.device, H: int, D: int, dtype: torch.dtype) -> list[str]:
    """Concrete implementations that can run this shape on ``device`` (``"tilelang:<variant>"``,
    ``"triton"``, ``"reference"``), in default-preference order."""
    device = torch.device(device)
    pow2 = D > 0 and D & (D - 1) == 0
    if device.type != "cuda":
        interp = os.environ.get("TRITON_INTERPRET", "0") == "1"
        return (["triton"] if interp and pow2 else []) + ["reference"]
    from .attention_tilelang import DEFAULT_VARIANT, VARIANTS, supported, tilelang_available

    out = []
    if tilelang_available()[0]:
        names = [DEFAULT_VARIANT] + [v for v in VARIANTS if v != DEFAULT_VARIANT]
        out += [f"tilelang:{v}" for v in names if supported(H, D, dtype, v)[0]]
    if pow2:
        out.append("triton")
    return out + ["reference"]


def measured_ms(H: int, D: int, topk: int, device=None) -> dict:
    """``{impl: ms}`` measured for this shape (entries of the same GPU model preferred), or ``{}``."""
    from .speed_table import MEASURED

    entry = MEASURED.get((int(H), int(D), topk_bucket(topk)))
    if not entry:
        return {}
    if device is not None and torch.device(device).type == "cuda" and entry.get("gpu"):
        name = torch.cuda.get_device_name(device)
        if name != entry["gpu"] and any(m.get("gpu") == name for m in MEASURED.values()):
            return {}  # measured on another GPU model, and this one has its own measurements elsewhere
    return dict(entry.get("ms", {}))


def choose_impl(device, H: int, D: int, dtype: torch.dtype, topk: int | None = None, family: str | None = None) -> str:
    """The implementation ``attn_impl="auto"`` (``family=None``) or ``"tilelang"`` (``family="tilelang"``)
    runs: the fastest measured one among :func:`runnable`, else the first runnable one."""
    cands = runnable(device, H, D, dtype)
    if family is not None:
        cands = [c for c in cands if c.startswith(family + ":")] or [f"{family}:unsupported"]
    if topk is not None:
        ms = measured_ms(H, D, topk, device)
        timed = [c for c in cands if c in ms]
        if timed:
            return min(timed, key=lambda c: ms[c])
    return cands[0]


def resolve_impl(attn_impl: str, *, device: torch.device, H: int, D: int, dtype: torch.dtype,
                 topk: int | None = None) -> str:
    """The concrete implementation ``attn_impl`` stands for on this device and shape:
    ``"tilelang:<variant>"``, ``"triton"`` or ``"reference"``."""
    _check_name(attn_impl)
    if attn_impl == "auto":
        return choose_impl(device, H, D, dtype, topk)
    if attn_impl == "tilelang":
        from .attention_tilelang import DEFAULT_VARIANT

        got = choose_impl(device, H, D, dtype, topk, family="tilelang")
        return got if not got.endswith(":unsupported") else f"tilelang:{DEFAULT_VARIANT}"
    return attn_impl


def sparse_attention(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                     window: int = DEFAULT_WINDOW, attn_impl: str = "auto", out: torch.Tensor | None = None,
                     check_indices: bool = True) -> torch.Tensor:
    """CSA sparse attention forward: ``q [B,S,Hq,D]`` over its top-k compressed rows
    (``indices [B,S,topk]`` int32 into ``kv_compressed [B,T,D]``, ``-1`` skipped; a row's valid
    indices must be distinct) and its sliding window (``kv_window [B,S_kv,D]`` by absolute
    position ``offset + s``), per-head fp32 ``sink [Hq]`` (or ``None``). Returns ``[B,S,Hq,D]``
    in q's dtype (``out`` when given). Kernels launch on ``q``'s device."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, got {type(q).__name__}")
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
    impl = resolve_impl(attn_impl, device=q.device, H=q.shape[-2] if q.dim() >= 2 else 0,
                        D=q.shape[-1] if q.dim() else 0, dtype=q.dtype,
                        topk=indices.shape[-1] if indices.dim() else None)
    kw = dict(softmax_scale=softmax_scale, offset=offset, window=window, check_indices=check_indices)
    if impl.startswith("tilelang"):
        from .attention_tilelang import sparse_attention_tilelang

        return sparse_attention_tilelang(q, kv_compressed, kv_window, sink, indices, out=out,
                                         variant=impl.split(":", 1)[1], **kw)
    if impl == "triton":
        from .attention_triton import sparse_attention_triton

        return sparse_attention_triton(q, kv_compressed, kv_window, sink, indices, out=out, **kw)
    from .reference import csa_attention_reference

    kw.pop("check_indices")
    o = csa_attention_reference(q, kv_compressed, kv_window, sink, indices, out_dtype=q.dtype, **kw)
    if out is not None:
        out.copy_(o.view(out.shape))
        return out
    return o
