"""``stream`` / ``stream_fp8``: this project's memory-bounded path.

Per query chunk (rows sized by the workspace budget):

1. the Triton score kernel writes the chunk's head-summed scores into the workspace (causal
   tiles skipped) and, per row, the maximum of every ``group`` columns;
2. the k-th largest group maximum ``tau`` is a lower bound of the row's k-th score, so a second
   kernel gathers the few entries ``>= tau`` (a read of the workspace, no sort);
3. an exact top-k over those candidates; rows whose candidates overflow (massive ties) and
   chunks whose rows see too few keys for a useful bound take the exact top-k of the full row.

Extra memory: the workspace plus the outputs, whatever S is."""
from __future__ import annotations

import os

import torch

from ..chunking import row_chunks
from ..kernels.candidates import gather_candidates
from ..kernels.score_tile import score_tile
from ..problem import IndexerProblem
from ..quant import quantize_fp8
from ..registry import register_path
from ..select import exact_topk, topk_by_key
from .output import TopkOutput

DEFAULT_WORKSPACE = 256 << 20
# Scratch per (row, visible key): the fp32 score, its share of the group maxima, and the
# 1-byte tie check of the full-row fallback.
BYTES_PER_SCORE = 6
# Groups per row are at least GROUPS_PER_K · topk, so that tau sits well inside the top.
GROUPS_PER_K = 4
MIN_GROUP = 4
CANDIDATES_PER_K = 4


def _tile_config(p: IndexerProblem) -> dict:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return dict(block_s=16, block_t=16, num_warps=1, num_stages=1)
    return dict(block_s=64, block_t=128, num_warps=4, num_stages=2)


def _run(p: IndexerProblem, q, k, w, k_scale, *, return_scores, workspace_bytes, chunk_q):
    cfg = _tile_config(p)
    budget = workspace_bytes or DEFAULT_WORKSPACE
    ws = torch.empty(max(1, budget // BYTES_PER_SCORE // 4 * 4), dtype=torch.float32, device=p.device)
    out = TopkOutput(p, return_scores)
    plan = row_chunks(p, bytes_per_col=BYTES_PER_SCORE, budget=budget, multiple=cfg["block_s"], max_rows=chunk_q)
    for s0, s1, n_cols in plan:
        if n_cols == 0:
            out.write_empty(s0, s1)
            continue
        r = s1 - s0
        need = p.B * r * n_cols
        if need > ws.numel():  # only when one block of rows alone exceeds the budget
            ws = torch.empty(need, dtype=torch.float32, device=p.device)
        chunk = ws[:need].view(p.B, r, n_cols)
        group = _group_size(p.n_visible(s0), p.topk, cfg["block_t"])
        if not group:
            score_tile(q, k, w, chunk, s0=s0, T=p.T, ratio=p.ratio, offset=p.offset, k_scale=k_scale, **cfg)
            vals, idx = exact_topk(chunk.view(p.B * r, n_cols), p.topk)
        else:
            gmax = torch.empty(p.B, r, triton_cdiv(n_cols, group), dtype=torch.float32, device=p.device)
            score_tile(q, k, w, chunk, s0=s0, T=p.T, ratio=p.ratio, offset=p.offset, k_scale=k_scale,
                       group_max=gmax, group=group, **cfg)
            vals, idx = _select_with_threshold(chunk.view(p.B * r, n_cols), gmax.view(p.B * r, -1), p.topk)
        out.write(s0, s1, vals, idx)
    return out.result()


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _group_size(min_visible: int, topk: int, block_t: int) -> int:
    """Largest power-of-two group (≤ ``block_t``) that leaves every row of the chunk at least
    ``GROUPS_PER_K · topk`` groups; 0 when that is below ``MIN_GROUP`` (select the full rows)."""
    g = min(block_t, min_visible // (GROUPS_PER_K * topk))
    if g < MIN_GROUP:
        return 0
    return 1 << (g.bit_length() - 1)


def _select_with_threshold(scores: torch.Tensor, gmax: torch.Tensor, topk: int):
    """Exact top-k of ``scores`` [R, N] given per-row group maxima [R, G] (G ≥ topk)."""
    tau = torch.topk(gmax, topk, dim=1, sorted=False).values.amin(dim=1)
    cv, ci, count = gather_candidates(scores, tau, CANDIDATES_PER_K * topk)
    vals, idx = topk_by_key(cv, ci, topk)
    over = (count > cv.shape[1]).nonzero().flatten()
    if over.numel():  # massive ties at the boundary: select those rows in full
        vals[over], idx[over] = exact_topk(scores[over], topk)
    return vals, idx


def _interpretable(x: torch.Tensor) -> torch.Tensor:
    # The Triton interpreter (CPU) has no bf16 / fp8 arithmetic: compute those in fp32 there.
    if x.device.type == "cpu" and x.dtype != torch.float32:
        return x.float()
    return x


@register_path("stream", description="Triton fused score tile + exact top-k over a bounded workspace",
               needs_cuda=True)
def stream(p, *, return_scores=False, workspace_bytes=None, chunk_q=None, **_):
    if p.is_fp8:
        return _run_fp8(p, p.q, p.k, p.q_scale, p.k_scale, return_scores=return_scores,
                        workspace_bytes=workspace_bytes, chunk_q=chunk_q)
    return _run(p, _interpretable(p.q), _interpretable(p.k), p.w, None, return_scores=return_scores,
                workspace_bytes=workspace_bytes, chunk_q=chunk_q)


def _run_fp8(p, q8, k8, q_scale, k_scale, **kw):
    # relu(qs·ks·x) = qs·ks·relu(x) for positive scales: fold q's into w, apply k's per column.
    w = (p.w * q_scale).contiguous()
    if q8.device.type == "cpu":
        q8, k8 = q8.float(), k8.float()
    return _run(p, q8, k8, w, k_scale, **kw)


@register_path("stream_fp8", description="stream with e4m3 q/k and per-token scales (quantises bf16 input)",
               needs_cuda=True, fp8=True)
def stream_fp8(p, *, return_scores=False, workspace_bytes=None, chunk_q=None, **_):
    if p.is_fp8:
        q8, k8, qs, ks = p.q, p.k, p.q_scale, p.k_scale
    else:
        q8, k8, qs, ks = quantize_fp8(p.q, p.k)
    return _run_fp8(p, q8, k8, qs, ks, return_scores=return_scores, workspace_bytes=workspace_bytes,
                    chunk_q=chunk_q)
