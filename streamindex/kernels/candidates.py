"""Candidate gathering in Triton: keep, per row, the entries of a score workspace that reach a
threshold, compacted into a small buffer.

With ``tau[r]`` ≤ the row's k-th largest score, the candidates hold the whole top-k (ties at the
boundary included), so an exact top-k over ``cap`` candidates replaces one over the full row.
Rows with more than ``cap`` candidates report their true count; the caller re-selects them.
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
        tl.store(CAND_I + row * stride_cr + pos, cols.to(tl.int64), mask=ok)


def gather_candidates(ws: torch.Tensor, tau: torch.Tensor, cap: int, block: int = 2048):
    """Entries of ``ws`` [R, N] fp32 with ``ws[r, j] >= tau[r]``: ``(vals [R, cap] fp32, idx [R, cap]
    int64, count [R] int32)``. Unused slots hold ``-inf``; rows with ``count > cap`` overflowed."""
    R, N = ws.shape
    assert ws.stride(1) == 1
    vals = torch.full((R, cap), float("-inf"), dtype=torch.float32, device=ws.device)
    idx = torch.zeros((R, cap), dtype=torch.int64, device=ws.device)
    count = torch.zeros(R, dtype=torch.int32, device=ws.device)
    if R and N:
        grid = (triton.cdiv(N, block), R)
        gather_candidates_kernel[grid](ws, tau.contiguous(), vals, idx, count, N, cap, ws.stride(0), cap,
                                       BLOCK=block, num_warps=8 if block >= 2048 else 4)
    return vals, idx, count
