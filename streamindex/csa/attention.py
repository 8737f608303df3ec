"""``sparse_attention``: pick a CSA sparse-attention implementation by name and run it.

Implementations (same contract, see :mod:`streamindex.csa.reference`):

* ``"tilelang"`` -- the pipelined TileLang kernel (CUDA, bf16, ``Hq % 16 == 0``, ``D % 64 == 0``, ``D <= 512``);
* ``"triton"``   -- the Triton fallback (CUDA, or CPU under ``TRITON_INTERPRET=1``; power-of-two ``D``);
* ``"reference"`` -- the dense masked torch reference (any device; small sizes);
* ``"auto"``     -- ``tilelang`` where it is importable and supports the shape, else ``triton`` where it
  can run, else ``reference``.
"""
from __future__ import annotations

import os

import torch

from .checks import DEFAULT_WINDOW

ATTN_IMPLS = ("auto", "tilelang", "triton", "reference")


def resolve_impl(attn_impl: str, *, device: torch.device, H: int, D: int, dtype: torch.dtype) -> str:
    """The concrete implementation ``attn_impl`` stands for on this device and shape."""
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
    if attn_impl != "auto":
        return attn_impl
    device = torch.device(device)
    if device.type == "cuda":
        from .attention_tilelang import supported, tilelang_available

        if tilelang_available()[0] and supported(H, D, dtype)[0]:
            return "tilelang"
        if D & (D - 1) == 0:
            return "triton"
        return "reference"
    if os.environ.get("TRITON_INTERPRET", "0") == "1" and D & (D - 1) == 0:
        return "triton"
    return "reference"


def sparse_attention(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                     window: int = DEFAULT_WINDOW, attn_impl: str = "auto", out: torch.Tensor | None = None,
                     check_indices: bool = True) -> torch.Tensor:
    """CSA sparse attention forward: ``q [B,S,Hq,D]`` over its top-k compressed rows
    (``indices [B,S,topk]`` int32 into ``kv_compressed [B,T,D]``, ``-1`` skipped) and its sliding
    window (``kv_window [B,S_kv,D]`` by absolute position ``offset + s``), per-head fp32 ``sink
    [Hq]`` (or ``None``). Returns ``[B,S,Hq,D]`` in q's dtype (``out`` when given)."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, got {type(q).__name__}")
    impl = resolve_impl(attn_impl, device=q.device, H=q.shape[-2] if q.dim() >= 2 else 0,
                        D=q.shape[-1] if q.dim() else 0, dtype=q.dtype)
    kw = dict(softmax_scale=softmax_scale, offset=offset, window=window, check_indices=check_indices)
    if impl == "tilelang":
        from .attention_tilelang import sparse_attention_tilelang

        return sparse_attention_tilelang(q, kv_compressed, kv_window, sink, indices, out=out, **kw)
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
