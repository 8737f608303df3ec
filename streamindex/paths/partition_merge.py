"""``partition_merge``: the StreamIndex paper's algorithm — query chunks × key chunks, a fused
score tile per (chunk_q, chunk_t) pair (one GEMM for all heads, relu, a weighted head-sum),
a per-tile top-k, merged into a running top-k per query. Memory ``chunk_q·H·chunk_t·4`` bytes
for the tile's per-head logits, plus the running top-k and the outputs."""
from __future__ import annotations

import torch

from ..registry import register_path
from ..select import exact_topk, merge_topk
from .output import TopkOutput
from .torch_scores import logits_fp32, mask_invisible_, score_operands

DEFAULT_CHUNK_Q = 512
DEFAULT_CHUNK_T = 4096


@register_path("partition_merge", description="paper's algorithm: q-chunk x t-chunk tiles, tile top-k, running merge")
def partition_merge(p, *, return_scores=False, chunk_q=None, chunk_t=None, **_):
    q, k = score_operands(p)
    cq, ct = chunk_q or DEFAULT_CHUNK_Q, chunk_t or DEFAULT_CHUNK_T
    B, H, D = p.B, p.H, p.D
    out = TopkOutput(p, return_scores)
    for s0 in range(0, p.S, cq):
        s1 = min(p.S, s0 + cq)
        r, n_cols = s1 - s0, p.n_visible(s1 - 1)
        if n_cols == 0:
            out.write_empty(s0, s1)
            continue
        q_rows = q[:, s0:s1].reshape(B, r * H, D)
        w_rows = p.w[:, s0:s1].unsqueeze(2)                                  # [B, r, 1, H]
        run_v = torch.full((B * r, 0), float("-inf"), device=p.device)
        run_i = torch.empty((B * r, 0), dtype=torch.int64, device=p.device)
        for t0 in range(0, n_cols, ct):
            t1 = min(n_cols, t0 + ct)
            logits = logits_fp32(q_rows, k[:, t0:t1]).view(B, r, H, t1 - t0).relu_()
            tile = torch.matmul(w_rows, logits).view(B, r, t1 - t0)            # weighted head-sum
            del logits
            mask_invisible_(tile, s0=s0, t0=t0, ratio=p.ratio, offset=p.offset)
            out.check_scores(tile, s0, t0)
            tv, ti = exact_topk(tile.view(B * r, -1), p.topk, base=t0)
            run_v, run_i = merge_topk(run_v, run_i, tv, ti, p.topk)
        out.write(s0, s1, run_v, run_i)
    return out.result()
