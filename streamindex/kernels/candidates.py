"""Candidate selection in Triton: from a score workspace and a per-row threshold to the exact,
ordered top-k written straight into the output.

``tau[r]`` is a lower bound of row ``r``'s k-th largest score, so the entries ``>= tau`` (ties at
the boundary included) hold the whole top-k. :func:`gather_candidates` compacts them into a
``cap``-wide buffer (one read of the workspace, no sort); :func:`select_candidates` sorts each
row's candidates on a composite key (score descending, index ascending — no ties) and writes
the first ``topk`` as the contract's output. Rows with more than ``cap`` candidates report their
true count; the caller re-selects them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def gather_candidates_kernel(WS, TAU, CAND_V, CAND_I, COUNT, n_cols, cap,
                             stride_wr, stride_cr, BLOCK: tl.constexpr):
    pid_c = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    cols = pid_c * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(WS + row * stride_wr + cols, mask=cols < n_cols, other=float("-inf"))
    tau = tl.load(TAU + row)
    keep = (v >= tau) & (cols < n_cols)
    n_keep = tl.sum(keep.to(tl.int32), axis=0)
    if n_keep > 0:
        base = tl.atomic_add(COUNT + row, n_keep)
        pos = base + tl.cumsum(keep.to(tl.int32), axis=0) - 1
        ok = keep & (pos < cap)
        tl.store(CAND_V + row * stride_cr + pos, v, mask=ok)
        tl.store(CAND_I + row * stride_cr + pos, cols, mask=ok)


def gather_candidates(ws: torch.Tensor, tau: torch.Tensor, cap: int, block: int = 2048):
    """Entries of ``ws`` [R, N] fp32 with ``ws[r, j] >= tau[r]``: ``(vals [R, cap] fp32, idx [R, cap]
    int32, count [R] int32)``. Slots at or beyond ``count`` are garbage; rows with ``count > cap``
    overflowed."""
    R, N = ws.shape
    assert ws.stride(1) == 1
    vals = torch.empty((R, cap), dtype=torch.float32, device=ws.device)
    idx = torch.empty((R, cap), dtype=torch.int32, device=ws.device)
    count = torch.zeros(R, dtype=torch.int32, device=ws.device)
    if R and N:
        grid = (triton.cdiv(N, block), R)
        gather_candidates_kernel[grid](ws, tau.contiguous(), vals, idx, count, N, cap, ws.stride(0), cap,
                                       BLOCK=block, num_warps=8 if block >= 2048 else 4)
    return vals, idx, count


@triton.jit
def select_candidates_kernel(CAND_V, CAND_I, COUNT, OUT_I, OUT_V, rows_per_b, s0, T, ratio, offset, topk,
                             stride_cr, stride_ob, stride_os, CAP: tl.constexpr, WRITE_V: tl.constexpr):
    row = tl.program_id(0)
    b = (row // rows_per_b).to(tl.int64)
    s = (s0 + row % rows_per_b).to(tl.int64)
    j = tl.arange(0, CAP)
    cnt = tl.load(COUNT + row)
    live = j < cnt
    v = tl.load(CAND_V + row.to(tl.int64) * stride_cr + j, mask=live, other=float("-inf"))
    i = tl.load(CAND_I + row.to(tl.int64) * stride_cr + j, mask=live, other=0).to(tl.int64)
    bits = (v + 0.0).to(tl.int32, bitcast=True)
    order = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    key = (order.to(tl.int64) << 32) | (0xFFFFFFFF - i)
    key = tl.sort(key, descending=True)
    t = 0xFFFFFFFF - (key & 0xFFFFFFFF)
    hi = (key >> 32).to(tl.int32)
    val = (hi ^ ((hi >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
    n_vis = tl.minimum((offset + s + 1) // ratio, T)
    ok = j < n_vis
    dst = b * stride_ob + s * stride_os + j
    tl.store(OUT_I + dst, tl.where(ok, t, -1).to(tl.int32), mask=j < topk)
    if WRITE_V:
        tl.store(OUT_V + dst, tl.where(ok, val, float("-inf")), mask=j < topk)


def select_candidates(vals: torch.Tensor, idx: torch.Tensor, count: torch.Tensor, out_idx: torch.Tensor,
                      out_scores: torch.Tensor | None, *, s0: int, T: int, ratio: int, offset: int) -> None:
    """Write the exact ordered top-k of each row's candidates (``[B·r, cap]`` from
    :func:`gather_candidates`; row ``b·r + i`` is query ``s0 + i`` of batch ``b``) into
    ``out_idx[b, s0 + i]`` (int32, ``-1`` beyond the visible keys) and ``out_scores`` if given."""
    R, cap = vals.shape
    B, _, topk = out_idx.shape
    assert cap & (cap - 1) == 0 and cap >= topk
    ov = out_scores if out_scores is not None else out_idx
    select_candidates_kernel[(R,)](vals, idx, count, out_idx, ov, R // B, s0, T, ratio, offset, topk,
                                   vals.stride(0), out_idx.stride(0), out_idx.stride(1),
                                   CAP=cap, WRITE_V=out_scores is not None, num_warps=8 if cap >= 2048 else 4)
