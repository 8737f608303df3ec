"""Random indexer inputs shaped like DeepSeek-V4's, for tests, benchmarks and examples."""
from __future__ import annotations

import torch

_FILL_ELEMS = 1 << 28  # fp32 staging for the random draw, per step


def make_inputs(S: int, H: int = 64, D: int = 128, *, B: int = 1, T: int | None = None, ratio: int = 4,
                dtype: torch.dtype = torch.bfloat16, device="cpu", seed: int = 0):
    """``(q [B,S,H,D], k [B,T,D], w [B,S,H] fp32)`` with N(0, 1) q and k in ``dtype`` and
    ``w = N(0,1) · D^-0.5 · H^-0.5`` as V4 folds its scales. ``T`` defaults to ``S // ratio``
    (every compressed key of the sequence), at least 1. Drawn on ``device`` in slices, so the
    fp32 staging stays small even when ``q`` fills most of the GPU."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)
    T = max(1, S // ratio) if T is None else T
    q = torch.empty(B, S, H, D, device=device, dtype=dtype)
    k = torch.empty(B, T, D, device=device, dtype=dtype)
    _fill_normal(q.view(-1, H * D), g)
    _fill_normal(k.view(-1, D), g)
    w = torch.randn(B, S, H, device=device, generator=g) * (D ** -0.5) * (H ** -0.5)
    return q, k, w


def _fill_normal(x2d: torch.Tensor, g: torch.Generator) -> None:
    rows = max(1, _FILL_ELEMS // max(1, x2d.shape[1]))
    for i in range(0, x2d.shape[0], rows):
        blk = x2d[i:i + rows]
        blk.copy_(torch.randn(blk.shape, device=x2d.device, generator=g))


def make_fp8_inputs(S: int, H: int = 64, D: int = 128, *, B: int = 1, T: int | None = None, ratio: int = 4,
                    device="cpu", seed: int = 0):
    """``(q8, k8, w, q_scale, k_scale)``: the bf16 inputs of :func:`make_inputs` quantised to e4m3
    with per-token scales, drawn slice by slice so that no bf16 ``q`` of the full length exists
    (8M tokens of V4 q are 128 GiB in bf16, 64 GiB in fp8)."""
    from .quant import quantize_rows_fp8

    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)
    T = max(1, S // ratio) if T is None else T
    q8 = torch.empty(B, S, H, D, device=device, dtype=torch.float8_e4m3fn)
    qs = torch.empty(B, S, H, device=device)
    rows = max(1, _FILL_ELEMS // (H * D))
    for b in range(B):
        for i in range(0, S, rows):
            n = min(rows, S - i)
            blk = torch.randn(n, H, D, device=device, generator=g).to(torch.bfloat16)
            q8[b, i:i + n], qs[b, i:i + n] = quantize_rows_fp8(blk)
    k = torch.empty(B, T, D, device=device, dtype=torch.bfloat16)
    _fill_normal(k.view(-1, D), g)
    k8, ks = quantize_rows_fp8(k)
    w = torch.randn(B, S, H, device=device, generator=g) * (D ** -0.5) * (H ** -0.5)
    return q8, k8, w, qs, ks
