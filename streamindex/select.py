"""Exact top-k selection with the contract's order: score descending, equal scores by
smaller key index first, also at the k-th boundary.

``torch.topk`` makes no promise about which of several equal values it returns, so the
selection here is repaired: rows whose k-th value is tied with an unselected entry are
re-selected on a composite int64 key ``(orderable(score), -index)``, which has no ties.
"""
from __future__ import annotations

import torch

_LOW = (1 << 32) - 1
NEG_INF = float("-inf")


def orderable_int(x: torch.Tensor) -> torch.Tensor:
    """int32 whose signed order equals the float order of fp32 ``x`` (``-0.0`` folded into ``+0.0``)."""
    bits = (x.float() + 0.0).view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def composite_key(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 key, larger = earlier in the output order: by value descending, then index ascending."""
    return (orderable_int(values).to(torch.int64) << 32) | (_LOW - index.to(torch.int64))


def _decode_index(key: torch.Tensor) -> torch.Tensor:
    return _LOW - (key & _LOW)


def topk_by_key(values: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ordered top-``k`` of each row of ``values`` [R, N] fp32, ties broken by ``index`` [R, N]."""
    k = min(k, values.shape[1])
    key = torch.topk(composite_key(values, index), k, dim=1, sorted=True).values
    high = (key >> 32).to(torch.int32)
    vals = (high ^ ((high >> 31) & 0x7FFFFFFF)).view(torch.float32)
    return vals, _decode_index(key)


def exact_topk(values: torch.Tensor, k: int, *, base: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ordered top-``k`` of each row of ``values`` [R, N] (fp32, no NaN).

    The index of column ``j`` is ``base + j``. Returns ``(vals fp32 [R, k'], idx int64 [R, k'])``
    with ``k' = min(k, N)``. Entries equal to ``-inf`` (masked) are returned last in any order;
    callers turn them into ``-1`` slots.
    """
    R, N = values.shape
    k = min(k, N)
    if R == 0 or k == 0:
        return values.new_empty(R, k), torch.empty(R, k, dtype=torch.int64, device=values.device)
    if k == N:
        vals, pos = torch.topk(values, k, dim=1, sorted=True)
        tied_out = None
    else:
        # One extra entry tells whether the k-th value is tied with an entry left out.
        vals, pos = torch.topk(values, k + 1, dim=1, sorted=True)
        tied_out = (vals[:, k] == vals[:, k - 1]) & (vals[:, k - 1] > NEG_INF)
        vals, pos = vals[:, :k], pos[:, :k]
    bad = None if tied_out is None else tied_out.nonzero().flatten()
    if bad is not None and bad.numel():
        cols = torch.arange(N, device=values.device)
        # Bound the int64 keys to about half the bytes of ``values``.
        step = max(1, (R * 4 // 2) // 8)
        for i in range(0, bad.numel(), step):
            rows = bad[i:i + step]
            v, p = topk_by_key(values[rows], cols.expand(rows.numel(), N), k)
            vals[rows], pos[rows] = v, p
    # Order inside the selection: value descending, then index ascending.
    key = composite_key(vals, pos)
    order = torch.argsort(key, dim=1, descending=True)
    return torch.gather(vals, 1, order), torch.gather(pos, 1, order) + base


def merge_topk(vals_a, idx_a, vals_b, idx_b, k: int):
    """Merge two ordered candidate lists ([R, ka], [R, kb], indices int64, ``-inf`` = empty) into the
    exact ordered top-``k``. Empty slots may carry any index."""
    vals = torch.cat([vals_a, vals_b], dim=1)
    idx = torch.cat([idx_a, idx_b], dim=1)
    return topk_by_key(vals, idx, k)


def finalize(vals: torch.Tensor, idx: torch.Tensor, n_visible: torch.Tensor, topk: int):
    """Pad/trim a selection [R, k'] to the output format: int32 ``[R, topk]`` indices with ``-1`` in
    slots at or beyond ``n_visible`` [R], fp32 scores with ``-inf`` there."""
    R, kk = idx.shape
    out_idx = torch.full((R, topk), -1, dtype=torch.int32, device=idx.device)
    out_val = torch.full((R, topk), NEG_INF, dtype=torch.float32, device=idx.device)
    kk = min(kk, topk)
    slot = torch.arange(kk, device=idx.device)
    keep = slot[None, :] < n_visible[:, None]
    out_idx[:, :kk] = torch.where(keep, idx[:, :kk], -1).to(torch.int32)
    out_val[:, :kk] = torch.where(keep, vals[:, :kk].float(), NEG_INF)
    return out_idx, out_val
