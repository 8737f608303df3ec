"""fp8 e4m3 quantisation with per-token scales, as DeepSeek's production indexer feeds it."""
from __future__ import annotations

import torch

E4M3_MAX = 448.0
_SLICE_ELEMS = 1 << 26


def quantize_rows_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x8, scale)``: one fp32 scale per vector along the last dim (amax / 448), ``x ≈ x8 · scale``.
    Works in slices so the fp32 staging stays small."""
    if not hasattr(torch, "float8_e4m3fn"):
        raise TypeError("this torch build has no float8_e4m3fn")
    D = x.shape[-1]
    flat = x.reshape(-1, D)
    x8 = torch.empty(flat.shape, dtype=torch.float8_e4m3fn, device=x.device)
    scale = torch.empty(flat.shape[0], dtype=torch.float32, device=x.device)
    step = max(1, _SLICE_ELEMS // D)
    for i in range(0, flat.shape[0], step):
        xf = flat[i:i + step].float()
        s = (xf.abs().amax(dim=-1) / E4M3_MAX).clamp(min=1e-12)
        x8[i:i + step] = (xf / s[:, None]).to(torch.float8_e4m3fn)
        scale[i:i + step] = s
    return x8.view(x.shape), scale.view(x.shape[:-1])


def quantize_fp8(q: torch.Tensor, k: torch.Tensor):
    """``(q8, k8, q_scale [..,S,H], k_scale [..,T])`` with one scale per (token, head) of ``q`` and
    per token of ``k``."""
    q8, qs = quantize_rows_fp8(q)
    k8, ks = quantize_rows_fp8(k)
    return q8, k8, qs, ks
