"""Metrics shared by the tests and the harness (DESIGN.md §3)."""
from __future__ import annotations

import torch

from .oracle import _batched, dequantize, oracle_scores
from .problem import sum_min_floor


def useful_flops(S: int, T: int, H: int, D: int, ratio: int, offset: int = 0, B: int = 1) -> int:
    """``2·H·D`` per visible (s, t) pair, summed over the batch."""
    return 2 * H * D * B * sum_min_floor(offset + 1, offset + S, ratio, T)


def recall_tolerance(q, k, w, rows, *, q_scale=None, k_scale=None, tol_factor: float = 1e-5):
    """Per-row absolute tolerance ``[B, R]`` fp64 covering fp32 accumulation error:
    ``tol_factor · Σ_h |w| · ‖q_h‖ · max_t ‖k_t‖`` (a Cauchy–Schwarz bound on each head's logit)."""
    q, k, w, q_scale, k_scale = _batched(q, k, w, q_scale, k_scale)
    qd = dequantize(q[:, rows], None if q_scale is None else q_scale[:, rows])   # [B, R, H, D]
    kmax = dequantize(k, k_scale).norm(dim=-1).amax(dim=-1)                       # [B]
    bound = (w[:, rows].double().abs() * qd.norm(dim=-1)).sum(-1) * kmax[:, None]
    return tol_factor * bound


def tie_aware_recall(idx, q, k, w, *, topk: int, ratio: int, offset: int = 0, rows=None,
                     q_scale=None, k_scale=None, tol_factor: float = 1e-5) -> torch.Tensor:
    """Per-row tie-aware recall ``[B, R]`` (fp64) of a path's output ``idx`` ``[B, S, topk]``.

    A selected ``t`` counts when it is visible, not a duplicate, and its oracle score is
    ``>=`` the oracle's k-th score minus the row's tolerance. Recall = hits / min(topk, visible).
    A row with no visible key scores 1 when every slot is ``-1``, else 0.
    """
    if idx.dim() == 2:
        idx = idx.unsqueeze(0)
    qb, kb, wb, qs, ks = _batched(q, k, w, q_scale, k_scale)
    S, T = qb.shape[1], kb.shape[1]
    rows = torch.arange(S, device=qb.device) if rows is None else rows.to(qb.device).long()
    sc = oracle_scores(qb, kb, wb, ratio=ratio, offset=offset, rows=rows, q_scale=qs, k_scale=ks)
    tol = recall_tolerance(qb, kb, wb, rows, q_scale=qs, k_scale=ks, tol_factor=tol_factor)
    sel = idx[:, rows.to(idx.device)].to(qb.device).long()                     # [B, R, topk]
    n_vis = torch.clamp((offset + rows + 1) // ratio, 0, T)                     # [R]
    need = torch.clamp(n_vis, max=topk)
    kth = torch.sort(sc, dim=-1, descending=True).values
    kth = torch.gather(kth, -1, (need - 1).clamp(min=0).expand(sc.shape[0], -1).unsqueeze(-1)).squeeze(-1)
    valid = (sel >= 0) & (sel < n_vis[None, :, None])
    s_sorted = torch.sort(torch.where(valid, sel, -1), dim=-1).values
    dup = torch.zeros_like(valid)
    dup[..., 1:] = (s_sorted[..., 1:] == s_sorted[..., :-1]) & (s_sorted[..., 1:] >= 0)
    got = torch.gather(sc, -1, s_sorted.clamp(min=0))
    hit = (s_sorted >= 0) & ~dup & (got >= (kth - tol).unsqueeze(-1))
    recall = hit.sum(-1).double() / need.clamp(min=1)[None, :].double()
    empty_ok = (sel < 0).all(-1).double()
    return torch.where(need[None, :] == 0, empty_ok, recall.clamp(max=1.0))


def overlap(idx_a: torch.Tensor, idx_b: torch.Tensor) -> torch.Tensor:
    """Per-row set overlap ``|A ∩ B| / max(|A|, |B|)`` of two index outputs ``[..., k]``
    (``-1`` ignored; 1 when both rows are empty)."""
    a, b = idx_a.long(), idx_b.long()
    eq = (a.unsqueeze(-1) == b.unsqueeze(-2)) & (a.unsqueeze(-1) >= 0)
    inter = eq.any(-1).sum(-1).double()
    size = torch.maximum((a >= 0).sum(-1), (b >= 0).sum(-1)).double()
    return torch.where(size == 0, torch.ones_like(inter), inter / size.clamp(min=1))
