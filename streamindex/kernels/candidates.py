"""Candidate selection in Triton: from a score workspace, its per-group maxima and the top-k
size to the exact, ordered top-k written straight into the output.

Three launches per chunk of rows:

* :func:`kth_group_max` — ``tau[r]``, the k-th largest group maximum of row ``r``, found exactly by
  a bitwise search over order-preserving integer keys (32 counting passes over registers). At
  least ``k`` groups hold an entry ``>= tau``, so ``tau`` bounds the row's k-th score from below
  and the entries ``>= tau`` (ties at the boundary included) hold the whole top-k.
* :func:`gather_candidates` — compacts those entries into a ``cap``-wide buffer. Groups whose
  maximum is below ``tau`` (most of them) are never read.
* :func:`select_candidates` — sorts each row's candidates on a composite key (score descending,
  index ascending: no ties) in the narrowest power-of-two width that holds them, and writes the
  first ``topk`` as the contract's output. Rows with more than ``cap`` candidates report their
  true count; the caller re-selects them.
"""
from __future__ import annotations

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


@triton.jit
def kth_group_max_kernel(GMAX, TAU, COUNT, n_groups, topk, stride_gr, BLOCK_G: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    g = tl.arange(0, BLOCK_G)
    v = tl.load(GMAX + row * stride_gr + g, mask=g < n_groups, other=float("-inf"))
    u = _ordered_key(v).to(tl.int64) + 2147483648          # [0, 2^32), same order as v
    ans = tl.full([], 0, tl.int64)
    for i in tl.static_range(32):
        cand = ans | (1 << (31 - i))
        ans = tl.where(tl.sum((u >= cand).to(tl.int32), axis=0) >= topk, cand, ans)
    tl.store(TAU + row, _key_value((ans - 2147483648).to(tl.int32)))
    tl.store(COUNT + row, 0)


def kth_group_max(gmax: torch.Tensor, topk: int):
    """``(tau [R] fp32, count [R] int32 zeros)``: the exact ``topk``-th largest value of each row of
    ``gmax`` [R, G] fp32 (finite, ``G >= topk``), and the zeroed counters of the gather. The row
    is held in registers (``next_power_of_2(G)`` wide; a variant per width)."""
    R, G = gmax.shape
    assert gmax.stride(1) == 1 and G >= topk
    tau = torch.empty(R, dtype=torch.float32, device=gmax.device)
    count = torch.empty(R, dtype=torch.int32, device=gmax.device)
    if R:
        block_g = triton.next_power_of_2(G)
        kth_group_max_kernel[(R,)](gmax, tau, count, G, topk, gmax.stride(0), BLOCK_G=block_g,
                                   num_warps=8 if block_g >= 4096 else 4)
    return tau, count


@triton.jit
def gather_candidates_kernel(WS, GMAX, TAU, CAND_V, CAND_I, COUNT, n_cols, n_groups, cap,
                             stride_wr, stride_gr, stride_cr, BLOCK: tl.constexpr, GROUP: tl.constexpr):
    NG: tl.constexpr = BLOCK // GROUP
    pid_c = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    tau = tl.load(TAU + row)
    g = pid_c * NG + tl.arange(0, NG)
    gm = tl.load(GMAX + row * stride_gr + g, mask=g < n_groups, other=float("-inf"))
    if tl.max(gm, axis=0) >= tau:
        group_ok = tl.reshape(tl.broadcast_to((gm >= tau)[:, None], [NG, GROUP]), [BLOCK])
        cols = pid_c * BLOCK + tl.arange(0, BLOCK)
        live = group_ok & (cols < n_cols)
        v = tl.load(WS + row * stride_wr + cols, mask=live, other=float("-inf"))
        keep = live & (v >= tau)
        n_keep = tl.sum(keep.to(tl.int32), axis=0)
        base = tl.atomic_add(COUNT + row, n_keep)
        pos = base + tl.cumsum(keep.to(tl.int32), axis=0) - 1
        ok = keep & (pos < cap)
        tl.store(CAND_V + row * stride_cr + pos, v, mask=ok)
        tl.store(CAND_I + row * stride_cr + pos, cols, mask=ok)


def gather_candidates(ws: torch.Tensor, gmax: torch.Tensor, group: int, tau: torch.Tensor,
                      count: torch.Tensor, cap: int, block: int = 2048):
    """Entries of ``ws`` [R, N] fp32 with ``ws[r, j] >= tau[r]``, reading only the groups of
    ``group`` columns whose maximum (``gmax`` [R, cdiv(N, group)]) is ``>= tau[r]``:
    ``(vals [R, cap] fp32, idx [R, cap] int32)``; ``count`` [R] int32 (zeros on entry) receives
    the number found. Slots at or beyond ``count`` are garbage; rows with ``count > cap``
    overflowed."""
    R, N = ws.shape
    assert ws.stride(1) == 1 and gmax.stride(1) == 1 and block % group == 0
    vals = torch.empty((R, cap), dtype=torch.float32, device=ws.device)
    idx = torch.empty((R, cap), dtype=torch.int32, device=ws.device)
    if R and N:
        grid = (triton.cdiv(N, block), R)
        gather_candidates_kernel[grid](ws, gmax, tau, vals, idx, count, N, gmax.shape[1], cap,
                                       ws.stride(0), gmax.stride(0), cap, BLOCK=block, GROUP=group,
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
