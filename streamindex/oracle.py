"""fp64 oracle: the exact scores and top-k, chunked over query rows so that it also runs on
sampled rows at long S. fp8 inputs are dequantised first (the oracle of the dequantised inputs)."""
from __future__ import annotations

import torch

from .problem import FP8_DTYPES, visible_counts

_ORACLE_ELEMS = 1 << 27  # fp64 elements of one [B, rows, T] accumulator chunk


def _batched(q, k, w, q_scale, k_scale):
    if q.dim() == 3:
        q, k, w = q.unsqueeze(0), k.unsqueeze(0), w.unsqueeze(0)
        q_scale = None if q_scale is None else q_scale.unsqueeze(0)
        k_scale = None if k_scale is None else k_scale.unsqueeze(0)
    return q, k, w, q_scale, k_scale


def dequantize(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """fp64 copy of ``x``, times its per-token ``scale`` (broadcast over the last dim) when given."""
    x = x.double()
    return x if scale is None else x * scale.double().unsqueeze(-1)


def oracle_scores(q, k, w, *, ratio: int, offset: int = 0, rows=None, q_scale=None, k_scale=None):
    """fp64 scores ``[B, R, T]`` of the query rows ``rows`` (1-D int tensor, default all S rows),
    ``-inf`` where ``t`` is not visible from the row's query."""
    q, k, w, q_scale, k_scale = _batched(q, k, w, q_scale, k_scale)
    if q.dtype in FP8_DTYPES and (q_scale is None or k_scale is None):
        raise ValueError("fp8 q/k need q_scale and k_scale for the oracle")
    B, S, H, D = q.shape
    T = k.shape[1]
    rows = torch.arange(S, device=q.device) if rows is None else rows.to(q.device).long()
    kd = dequantize(k, k_scale)                       # [B, T, D]
    out = torch.empty(B, rows.numel(), T, dtype=torch.float64, device=q.device)
    step = max(1, _ORACLE_ELEMS // max(1, B * T))
    for i in range(0, rows.numel(), step):
        r = rows[i:i + step]
        qd = dequantize(q[:, r], None if q_scale is None else q_scale[:, r])  # [B, r, H, D]
        wd = w[:, r].double()
        acc = out[:, i:i + step]
        acc.zero_()
        for h in range(H):
            acc.add_(torch.relu(torch.bmm(qd[:, :, h], kd.transpose(1, 2))) * wd[:, :, h, None])
        n_vis = torch.clamp((offset + r + 1) // ratio, 0, T)
        acc.masked_fill_(torch.arange(T, device=q.device)[None, None, :] >= n_vis[None, :, None], float("-inf"))
    return out


def oracle_topk(q, k, w, topk: int, *, ratio: int, offset: int = 0, rows=None, q_scale=None, k_scale=None):
    """Exact fp64 top-k: ``(idx int64 [B, R, topk], scores fp64 [B, R, topk])``, ``-1`` / ``-inf``
    padded, ordered by score descending then index ascending (a stable sort)."""
    sc = oracle_scores(q, k, w, ratio=ratio, offset=offset, rows=rows, q_scale=q_scale, k_scale=k_scale)
    B, R, T = sc.shape
    vals, idx = torch.sort(sc, dim=-1, descending=True, stable=True)
    kk = min(topk, T)
    vals, idx = vals[..., :kk], idx[..., :kk]
    pad = topk - kk
    if pad:
        vals = torch.cat([vals, vals.new_full((B, R, pad), float("-inf"))], -1)
        idx = torch.cat([idx, idx.new_full((B, R, pad), -1)], -1)
    idx = torch.where(torch.isneginf(vals), -1, idx)
    return idx, vals
