"""Fused indexer score tile in Triton.

One program computes ``score[s, t] = kscale[t] · Σ_h w[s,h] · relu(q[s,h,:] · k[t,:])`` for a
``BLOCK_S × BLOCK_T`` tile of (query, key) pairs: the key tile is loaded once, the heads are a
loop of ``tl.dot`` whose fp32 results are relu'd, weighted and summed in registers, so per-head
logits never reach HBM. Keys not visible from a query get ``-inf``; a tile that no query of the
block can see is not computed at all (only filled with ``-inf``). The ``CHECK_FINITE`` variant
(for inputs whose bound does not rule out fp32 overflow) raises a device flag when a visible score
is not finite; nothing syncs the host.

Positions ``offset + s`` are int64 (exact for any ``offset + S <= 2^62``). The launcher splits a
chunk whose row blocks or batch would pass CUDA's 65,535 limit on grid y / z into several launches.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .visibility import n_visible


MAX_GRID_YZ = 65535


@triton.jit
def score_tile_kernel(Q, K, W, KSCALE, OUT, GMAX, NONFINITE,
                      s0, n_rows, n_cols, T, ratio, offset,
                      stride_qb, stride_qs, stride_qh, stride_kb, stride_kt, stride_wb, stride_ws,
                      stride_ksb, stride_ob, stride_or, stride_gb, stride_gr, n_groups,
                      H: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
                      BLOCK_S: tl.constexpr, BLOCK_T: tl.constexpr,
                      HAS_KSCALE: tl.constexpr, IEEE_FP32: tl.constexpr, GROUP: tl.constexpr,
                      CHECK_FINITE: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    rows = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    cols = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    s = (s0 + rows).to(tl.int64)
    row_ok = rows < n_rows
    n_vis = n_visible(s, offset, ratio, T)
    last_row = tl.minimum(pid_s * BLOCK_S + BLOCK_S, n_rows) - 1
    block_vis = n_visible((s0 + last_row).to(tl.int64), offset, ratio, T)

    acc = tl.full([BLOCK_S, BLOCK_T], float("-inf"), tl.float32)
    if pid_t * BLOCK_T < block_vis:
        d = tl.arange(0, BLOCK_D)
        k_tile = tl.load(K + b * stride_kb + cols[None, :].to(tl.int64) * stride_kt + d[:, None],
                         mask=(cols[None, :] < T) & (d[:, None] < D), other=0.0)      # [BLOCK_D, BLOCK_T]
        q_ptrs = Q + b * stride_qb + s[:, None] * stride_qs + d[None, :]
        q_mask = row_ok[:, None] & (d[None, :] < D)
        w_ptrs = W + b * stride_wb + s * stride_ws
        acc = tl.zeros([BLOCK_S, BLOCK_T], tl.float32)
        for h in range(H):
            q_h = tl.load(q_ptrs + h * stride_qh, mask=q_mask, other=0.0)              # [BLOCK_S, BLOCK_D]
            if IEEE_FP32:
                logit = tl.dot(q_h, k_tile, input_precision="ieee")
            else:
                logit = tl.dot(q_h, k_tile)
            w_h = tl.load(w_ptrs + h, mask=row_ok, other=0.0)
            acc += tl.maximum(logit, 0.0) * w_h[:, None]
        if HAS_KSCALE:
            ks = tl.load(KSCALE + b * stride_ksb + cols, mask=cols < T, other=0.0)
            acc = acc * ks[None, :]
        if CHECK_FINITE:
            # NaN and +-inf both fail |x| <= FLT_MAX.
            bad = (cols[None, :] < n_vis[:, None]) & row_ok[:, None] & ~(tl.abs(acc) <= 3.4028234663852886e38)
            if tl.max(bad.to(tl.int32)) > 0:
                tl.atomic_max(NONFINITE, 1)
        # ``+ 0.0`` folds -0.0 into +0.0 so that equal scores compare and order equal.
        acc = tl.where(cols[None, :] < n_vis[:, None], acc + 0.0, float("-inf"))
    out_ptrs = OUT + b * stride_ob + rows[:, None].to(tl.int64) * stride_or + cols[None, :]
    tl.store(out_ptrs, acc, mask=row_ok[:, None] & (cols[None, :] < n_cols))
    if GROUP > 0:
        NG: tl.constexpr = BLOCK_T // GROUP
        gmax = tl.max(tl.reshape(acc, [BLOCK_S, NG, GROUP]), axis=2)
        g = pid_t * NG + tl.arange(0, NG)
        g_ptrs = GMAX + b * stride_gb + rows[:, None].to(tl.int64) * stride_gr + g[None, :]
        tl.store(g_ptrs, gmax, mask=row_ok[:, None] & (g[None, :] < n_groups))


def score_tile(q: torch.Tensor, k: torch.Tensor, w: torch.Tensor, out: torch.Tensor, *, s0: int, T: int,
               ratio: int, offset: int, nonfinite: torch.Tensor, k_scale: torch.Tensor | None = None,
               group_max: torch.Tensor | None = None, group: int = 0, block_s: int = 64,
               block_t: int = 128, num_warps: int = 4, num_stages: int = 3, check_finite: bool = False,
               n_store: int | None = None, n_groups_store: int | None = None) -> torch.Tensor:
    """Fill ``out`` ``[B, n_rows, n_cols]`` fp32 with the scores of queries ``s0 .. s0+n_rows-1``
    against keys ``0 .. n_cols-1`` (``-inf`` where not visible).

    q ``[B, S, H, D]`` and k ``[B, T, D]`` (bf16 / fp16 / fp32 / fp8 e4m3; last dim contiguous, any
    other strides), w ``[B, S, H]`` fp32 (for fp8, ``w · q_scale``), k_scale ``[B, T]`` fp32 or None.
    ``out`` may have any row stride (its last dim contiguous); ``n_store`` columns are written
    (default ``n_cols``; at most the row stride), those past ``n_cols`` with ``-inf``: a multiple of
    16 keeps the stores vectorised and the kernel variants few. group_max: ``[B, n_rows,
    cdiv(n_cols, group)]`` fp32 filled with per-group maxima when ``group`` (a power of two dividing
    ``block_t``) is > 0 (``n_groups_store`` of them per row, likewise). ``check_finite``: the kernel
    variant that sets ``nonfinite`` (int32 ``[1]``) to 1 when a visible score is NaN or infinite.
    """
    B, n_rows, n_cols = out.shape
    H, D = q.shape[2], q.shape[3]
    assert q.stride(3) == 1 and k.stride(2) == 1 and w.stride(2) == 1 and out.stride(2) == 1
    n_store = n_cols if n_store is None else n_store
    assert n_cols <= n_store and (n_rows == 1 or n_store <= out.stride(1))
    block_d = max(16, triton.next_power_of_2(D))
    ks = k_scale if k_scale is not None else w
    if group:
        assert group_max is not None and block_t % group == 0 and group_max.stride(2) == 1
    gm = group_max if group else out
    n_gstore = gm.shape[2] if n_groups_store is None else n_groups_store
    # Row blocks on grid y, the batch on grid z: launch in pieces that stay within CUDA's limits.
    rows_per_launch = MAX_GRID_YZ * block_s
    for b0 in range(0, B, MAX_GRID_YZ):
        b1 = min(B, b0 + MAX_GRID_YZ)
        for r0 in range(0, n_rows, rows_per_launch):
            r1 = min(n_rows, r0 + rows_per_launch)
            o, g = out[b0:b1, r0:r1], gm[b0:b1, r0:r1]
            grid = (triton.cdiv(n_store, block_t), triton.cdiv(r1 - r0, block_s), b1 - b0)
            score_tile_kernel[grid](
                q[b0:b1], k[b0:b1], w[b0:b1], ks[b0:b1], o, g, nonfinite, s0 + r0, r1 - r0, n_store, T, ratio,
                offset, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), w.stride(0), w.stride(1),
                ks.stride(0), o.stride(0), o.stride(1), g.stride(0), g.stride(1), n_gstore,
                H=H, D=D, BLOCK_D=block_d, BLOCK_S=block_s, BLOCK_T=block_t,
                HAS_KSCALE=k_scale is not None, IEEE_FP32=q.dtype == torch.float32, GROUP=group,
                CHECK_FINITE=check_finite, num_warps=num_warps, num_stages=num_stages)
    return out
