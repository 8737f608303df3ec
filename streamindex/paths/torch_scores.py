"""Score building blocks in plain torch for the comparison paths (fp32 accumulation)."""
from __future__ import annotations

import functools

import torch

from ..oracle import dequantize
from ..problem import IndexerProblem


@functools.lru_cache(maxsize=None)
def _has_mm_out_dtype(device_type: str) -> bool:
    if device_type != "cuda":
        return False
    try:
        a = torch.ones(1, 16, 16, device="cuda", dtype=torch.bfloat16)
        torch.bmm(a, a, out_dtype=torch.float32)
        return True
    except (TypeError, RuntimeError, NotImplementedError):
        return False


def logits_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b^T`` with fp32 output: a ``[B, M, D]``, b ``[B, N, D]`` → ``[B, M, N]``.
    bf16/fp16 on CUDA use the tensor cores with fp32 output; otherwise the operands are upcast."""
    if a.dtype in (torch.bfloat16, torch.float16) and _has_mm_out_dtype(a.device.type):
        return torch.bmm(a, b.transpose(1, 2), out_dtype=torch.float32)
    return torch.bmm(a.float(), b.float().transpose(1, 2))


def score_operands(p: IndexerProblem) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k ready for :func:`logits_fp32` (fp8 inputs are dequantised to fp32)."""
    if p.is_fp8:
        return dequantize(p.q, p.q_scale).float(), dequantize(p.k, p.k_scale).float()
    return p.q, p.k


def head_summed_scores(q: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Σ_h w[..,h] · relu(q[..,h,:] · k)``: q ``[B, r, H, D]``, k ``[B, c, D]``, w ``[B, r, H]``
    → fp32 ``[B, r, c]``, heads accumulated one at a time (one ``[B, r, c]`` temporary)."""
    acc = None
    for h in range(q.shape[2]):
        lg = logits_fp32(q[:, :, h], k).relu_().mul_(w[:, :, h, None])
        acc = lg if acc is None else acc.add_(lg)
    return acc


def mask_invisible_(scores: torch.Tensor, *, s0: int, t0: int, ratio: int, offset: int) -> torch.Tensor:
    """Set ``scores[b, i, j] = -inf`` where key ``t0 + j`` is not visible from query ``s0 + i``."""
    r, c = scores.shape[-2:]
    s = torch.arange(s0, s0 + r, device=scores.device)
    t = torch.arange(t0, t0 + c, device=scores.device)
    n_vis = (offset + s + 1) // ratio
    return scores.masked_fill_(t[None, None, :] >= n_vis[None, :, None], float("-inf"))
