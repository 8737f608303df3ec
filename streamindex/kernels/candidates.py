"""Candidate selection in Triton: from a score workspace, its per-group maxima and the top-k
size to the exact, ordered top-k written straight into the output.

Three launches per chunk of rows:

* :func:`kth_group_max` — ``tau[r]``, the k-th largest group maximum of row ``r``, found exactly by
  a bitwise search over order-preserving integer keys (32 counting passes over registers). At
  least ``k`` groups hold an entry ``>= tau``, so ``tau`` bounds the row's k-th score from below
  and the entries ``>= tau`` (ties at the boundary included) hold the whole top-k. The same pass
  lists the ids of those live groups (about ``k`` of them).
* :func:`gather_candidates` — compacts the entries ``>= tau`` of the live groups into a
  ``cap``-wide buffer. Only the live groups are read or touched: about ``k · group`` entries per
  row, a quarter to an eighth of it.
* :func:`select_candidates` — sorts each row's candidates on a composite key (score descending,
  index ascending: no ties) in the narrowest power-of-two width that holds them, and writes the
  first ``topk`` as the contract's output. Rows with more than ``cap`` candidates report their
  true count; the caller re-selects them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl


@triton.jit
def _ordered_key(v):
    """int32 keys in the order of the fp32 values (``-0.0`` folded into ``+0.0``)."""
    bits = (v + 0.0).to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@triton.jit
def _key_value(key):
    """Inverse of :func:`_ordered_key`."""
    return (key ^ ((key >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)


NEG_INF_KEY = tl.constexpr(0x007FFFFF)   # _ordered_key(-inf) + 2^31


@triton.jit
def kth_group_max_kernel(GMAX, TAU, LIVE, N_LIVE, COUNT, n_groups, topk, live_cap, stride_gr, stride_lr,
                         BLOCK_G: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    g = tl.arange(0, BLOCK_G)
    in_row = g < n_groups
    v = tl.load(GMAX + row * stride_gr + g, mask=in_row, other=float("-inf"))
    u = _ordered_key(v).to(tl.int64) + 2147483648          # [0, 2^32), same order as v
    ans = tl.full([], 0, tl.int64)
    for i in tl.static_range(32):
        cand = ans | (1 << (31 - i))
        ans = tl.where(tl.sum((u >= cand).to(tl.int32), axis=0) >= topk, cand, ans)
    # Fewer than topk entries: the search found nothing; tau is then -inf (its key is the least).
    ans = tl.maximum(ans, NEG_INF_KEY)
    live = (in_row & (u >= ans) & (v > float("-inf"))).to(tl.int32)
    pos = tl.cumsum(live, axis=0) - 1
    tl.store(LIVE + row * stride_lr + pos, g, mask=(live != 0) & (pos < live_cap))
    tl.store(N_LIVE + row, tl.sum(live, axis=0))
    tl.store(TAU + row, _key_value((ans - 2147483648).to(tl.int32)))
    tl.store(COUNT + row, 0)


class Threshold(NamedTuple):
    """Output of :func:`kth_group_max` for rows ``R``; the input of :func:`gather_candidates`."""
    tau: torch.Tensor     # [R] fp32: the k-th largest group maximum (-inf if fewer than k)
    live: torch.Tensor    # [R, live_cap] int32: ids of the finite groups with maximum >= tau, ascending
    n_live: torch.Tensor  # [R] int32: how many there are (above live_cap: the row overflows)
    count: torch.Tensor   # [R] int32 zeros: the gather's candidate counters


def live_capacity(topk: int) -> int:
    """Group-id slots per row: twice ``topk`` (continuous scores give exactly ``topk`` live groups;
    more only through ties between group maxima)."""
    return 2 * topk


def kth_group_max(gmax: torch.Tensor, topk: int, live_cap: int | None = None) -> Threshold:
    """``tau``, the exact ``topk``-th largest value of each row of ``gmax`` [R, G] fp32 (no NaN;
    ``-inf`` when the row has fewer than ``topk`` entries), and the ids of the groups that reach
    it and are not ``-inf`` (the first ``live_cap``, default :func:`live_capacity`), with zeroed
    counters for the gather. With ``group = 1`` (``gmax`` = the scores) the live groups are the
    candidates themselves. The row is held in registers (``next_power_of_2(G)`` wide; a variant per
    width)."""
    R, G = gmax.shape
    assert gmax.stride(1) == 1
    live_cap = live_cap or live_capacity(topk)
    dev = gmax.device
    th = Threshold(torch.empty(R, dtype=torch.float32, device=dev),
                   torch.empty((R, live_cap), dtype=torch.int32, device=dev),
                   torch.empty(R, dtype=torch.int32, device=dev),
                   torch.empty(R, dtype=torch.int32, device=dev))
    if R:
        block_g = triton.next_power_of_2(G)
        kth_group_max_kernel[(R,)](gmax, th.tau, th.live, th.n_live, th.count, G, topk, live_cap,
                                   gmax.stride(0), live_cap, BLOCK_G=block_g,
                                   num_warps=8 if block_g >= 4096 else 4)
    return th


@triton.jit
def gather_candidates_kernel(WS, TAU, LIVE, N_LIVE, CAND_V, CAND_I, COUNT, n_cols, live_cap, cap,
                             stride_wr, stride_lr, stride_cr, BLOCK_L: tl.constexpr, GROUP: tl.constexpr):
    pid = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    n_live = tl.load(N_LIVE + row)
    if pid * BLOCK_L < tl.minimum(n_live, live_cap):
        j = pid * BLOCK_L + tl.arange(0, BLOCK_L)
        ok_g = j < tl.minimum(n_live, live_cap)
        gid = tl.load(LIVE + row * stride_lr + j, mask=ok_g, other=0)
        cols = gid[:, None] * GROUP + tl.arange(0, GROUP)[None, :]
        live = ok_g[:, None] & (cols < n_cols)
        v = tl.load(WS + row * stride_wr + cols, mask=live, other=float("-inf"))
        keep = (live & (v >= tl.load(TAU + row))).to(tl.int32)
        per_group = tl.sum(keep, axis=1)
        n_keep = tl.sum(per_group, axis=0)
        # A row with more live groups than slots is reported as overflowing (count > cap).
        flag = tl.where((pid == 0) & (n_live > live_cap), cap + 1, 0)
        base = tl.atomic_add(COUNT + row, n_keep + flag)
        pos = base + (tl.cumsum(per_group, axis=0) - per_group)[:, None] + tl.cumsum(keep, axis=1) - keep
        ok = (keep != 0) & (pos < cap)
        tl.store(CAND_V + row * stride_cr + pos, v, mask=ok)
        tl.store(CAND_I + row * stride_cr + pos, cols, mask=ok)


def gather_candidates(ws: torch.Tensor, th: Threshold, group: int, cap: int, block: int = 2048):
    """Entries of ``ws`` [R, N] fp32 with ``ws[r, j] >= th.tau[r]``, reading only the live groups
    of ``group`` columns listed in ``th``: ``(vals [R, cap] fp32, idx [R, cap] int32)``;
    ``th.count`` [R] int32 (zeros on entry) receives the number found. Each program reads
    ``block`` entries. Slots at or beyond ``count`` are garbage; rows with ``count > cap``
    overflowed (too many candidates, or more live groups than ``th.live`` holds)."""
    R, N = ws.shape
    live_cap = th.live.shape[1]
    assert ws.stride(1) == 1 and th.live.stride(1) == 1 and block % group == 0
    vals = torch.empty((R, cap), dtype=torch.float32, device=ws.device)
    idx = torch.empty((R, cap), dtype=torch.int32, device=ws.device)
    if R and N:
        block_l = block // group
        grid = (triton.cdiv(live_cap, block_l), R)
        gather_candidates_kernel[grid](ws, th.tau, th.live, th.n_live, vals, idx, th.count, N, live_cap, cap,
                                       ws.stride(0), th.live.stride(0), cap, BLOCK_L=block_l, GROUP=group,
                                       num_warps=8 if block >= 2048 else 4)
    return vals, idx


@triton.jit
def _sort_and_store(CAND_V, CAND_I, cnt, row, b, s, OUT_I, OUT_V, T, ratio, offset, topk,
                    stride_cr, stride_ob, stride_os, W: tl.constexpr, WRITE_V: tl.constexpr):
    j = tl.arange(0, W)
    live = j < cnt
    v = tl.load(CAND_V + row * stride_cr + j, mask=live, other=float("-inf"))
    i = tl.load(CAND_I + row * stride_cr + j, mask=live, other=0).to(tl.int64)
    key = (_ordered_key(v).to(tl.int64) << 32) | (0xFFFFFFFF - i)
    key = tl.sort(key, descending=True)
    t = 0xFFFFFFFF - (key & 0xFFFFFFFF)
    val = _key_value((key >> 32).to(tl.int32))
    n_vis = tl.minimum((offset + s + 1) // ratio, T)
    ok = j < n_vis
    dst = b * stride_ob + s * stride_os + j
    tl.store(OUT_I + dst, tl.where(ok, t, -1).to(tl.int32), mask=j < topk)
    if WRITE_V:
        tl.store(OUT_V + dst, tl.where(ok, val, float("-inf")), mask=j < topk)


@triton.jit
def select_candidates_kernel(CAND_V, CAND_I, COUNT, OUT_I, OUT_V, rows_per_b, s0, T, ratio, offset, topk,
                             stride_cr, stride_ob, stride_os, CAP: tl.constexpr, WRITE_V: tl.constexpr):
    row = tl.program_id(0)
    b = (row // rows_per_b).to(tl.int64)
    s = (s0 + row % rows_per_b).to(tl.int64)
    row = row.to(tl.int64)
    cnt = tl.load(COUNT + row)
    # A row holds at least topk candidates; sorting a quarter or half of the slots is 2-5x less work.
    if cnt <= CAP // 4:
        _sort_and_store(CAND_V, CAND_I, cnt, row, b, s, OUT_I, OUT_V, T, ratio, offset, topk,
                        stride_cr, stride_ob, stride_os, W=CAP // 4, WRITE_V=WRITE_V)
    elif cnt <= CAP // 2:
        _sort_and_store(CAND_V, CAND_I, cnt, row, b, s, OUT_I, OUT_V, T, ratio, offset, topk,
                        stride_cr, stride_ob, stride_os, W=CAP // 2, WRITE_V=WRITE_V)
    else:
        _sort_and_store(CAND_V, CAND_I, cnt, row, b, s, OUT_I, OUT_V, T, ratio, offset, topk,
                        stride_cr, stride_ob, stride_os, W=CAP, WRITE_V=WRITE_V)


def select_candidates(vals: torch.Tensor, idx: torch.Tensor, count: torch.Tensor, out_idx: torch.Tensor,
                      out_scores: torch.Tensor | None, *, s0: int, T: int, ratio: int, offset: int) -> None:
    """Write the exact ordered top-k of each row's candidates (``[B·r, cap]`` from
    :func:`gather_candidates`, at least ``topk`` per row; row ``b·r + i`` is query ``s0 + i`` of
    batch ``b``) into ``out_idx[b, s0 + i]`` (int32, ``-1`` beyond the visible keys) and
    ``out_scores`` if given."""
    R, cap = vals.shape
    B, _, topk = out_idx.shape
    assert cap & (cap - 1) == 0 and cap >= 4 * topk
    ov = out_scores if out_scores is not None else out_idx
    select_candidates_kernel[(R,)](vals, idx, count, out_idx, ov, R // B, s0, T, ratio, offset, topk,
                                   vals.stride(0), out_idx.stride(0), out_idx.stride(1),
                                   CAP=cap, WRITE_V=out_scores is not None, num_warps=8 if cap >= 2048 else 4)
