"""``stream`` / ``stream_fp8``: this project's memory-bounded path.

Per query chunk (rows sized by the workspace budget):

1. the Triton score kernel writes the chunk's head-summed scores into the workspace (causal
   tiles skipped) and, per row, the maximum of every ``group`` columns;
2. the k-th largest group maximum ``tau`` is a lower bound of the row's k-th score; a kernel finds
   it and lists the groups whose maximum reaches it, a second gathers the few entries ``>= tau``
   from those groups only;
3. a third kernel sorts each row's candidates on (score, -index) keys and writes the output row.

Chunks whose rows see too few keys for column groups but at most ``DIRECT_MAX_COLS`` take tau
straight from their scores (group 1). Rows whose candidates overflow (massive ties at the
boundary) and wider chunks still too short for groups take the exact top-k of the full row.

Extra memory: the workspace plus the outputs, whatever S is."""
from __future__ import annotations

import functools
import os

import torch

from ..chunking import row_chunks
from ..kernels.candidates import gather_candidates, kth_group_max, select_candidates
from ..kernels.score_tile import score_tile
from ..problem import IndexerProblem
from ..quant import quantize_fp8
from ..registry import register_path
from ..select import exact_topk
from .output import TopkOutput

DEFAULT_WORKSPACE = 256 << 20
# Workspace bytes per (row, visible key): the fp32 score; the group maxima add 1/group of it.
BYTES_PER_SCORE = 4
# Full-row top-k temporaries per score (torch.topk's outputs and the ordering's int64 keys when
# k is close to the row length), held to half the budget.
FULL_ROW_BYTES = 48
# Full-row selections are written to the output in batches of about this many bytes.
FLUSH_BYTES = 32 << 20
# Groups per row are at least GROUPS_PER_K · topk, so that tau sits well inside the top.
GROUPS_PER_K = 4
MIN_GROUP = 4
CANDIDATES_PER_K = 4
# Chunks too short for groups of MIN_GROUP but at most this wide take tau straight from their
# scores (group 1): the k-th score found in registers, next_power_of_2(n_cols) wide.
DIRECT_MAX_COLS = 8192
# Rows selected per launch: their candidate buffers (cap · 8 B + live ids) stay within ~40 MiB.
SELECT_ROWS = 2048


def _tile_config(q: torch.Tensor) -> dict:
    """Tile shape of the score kernel; measured on the H200 (docs/PERFORMANCE.md)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return dict(block_s=16, block_t=16, num_warps=1, num_stages=1)
    if q.element_size() == 1:
        return dict(block_s=64, block_t=128, num_warps=4, num_stages=3)
    return dict(block_s=64, block_t=128, num_warps=4, num_stages=4)


def _run(p: IndexerProblem, q, k, w, k_scale, *, return_scores, workspace_bytes, chunk_q):
    cfg = _tile_config(q)
    budget = workspace_bytes or DEFAULT_WORKSPACE
    plan = list(row_chunks(p, bytes_per_col=BYTES_PER_SCORE, budget=budget, multiple=cfg["block_s"],
                           max_rows=chunk_q))
    # No larger than the largest chunk needs (short problems fit in less than the budget).
    need = max(p.B * (s1 - s0) * n for s0, s1, n in plan)
    ws = torch.empty(max(1, min(budget // BYTES_PER_SCORE, need)), dtype=torch.float32, device=p.device)
    gmax_buf = torch.empty(0, dtype=torch.float32, device=p.device)
    out = TopkOutput(p, return_scores)
    overflow = []  # (s0, s1, per-row candidate counts): checked once, at the end
    for s0, s1, n_cols in plan:
        if n_cols == 0:
            out.write_empty(s0, s1)
            continue
        chunk = _workspace(ws, p.B * (s1 - s0) * n_cols).view(p.B, s1 - s0, n_cols)
        group = _group_size(p.n_visible(s0), p.topk, cfg["block_t"])
        if group:
            n_groups = -(-n_cols // group)
            if gmax_buf.numel() < p.B * (s1 - s0) * n_groups:
                gmax_buf = torch.empty(p.B * (s1 - s0) * n_groups, dtype=torch.float32, device=p.device)
            gmax = gmax_buf[:p.B * (s1 - s0) * n_groups].view(p.B, s1 - s0, n_groups)
            score_tile(q, k, w, chunk, s0=s0, T=p.T, ratio=p.ratio, offset=p.offset, k_scale=k_scale,
                       group_max=gmax, group=group, **cfg)
        elif n_cols <= DIRECT_MAX_COLS:
            # Short rows: the scores are their own groups (group 1), tau is the exact k-th score.
            score_tile(q, k, w, chunk, s0=s0, T=p.T, ratio=p.ratio, offset=p.offset, k_scale=k_scale, **cfg)
            group, gmax = 1, chunk
        else:
            _select_full_rows(p, q, k, w, k_scale, chunk, s0, cfg, budget, out)
            continue
        count = _select_with_threshold(p, chunk, gmax, group, out, s0)
        overflow.append((s0, s1, count))
    # Rows whose candidates overflowed (massive ties at the boundary) are recomputed in full.
    # Checking once here, not per chunk, keeps the GPU queue free of host synchronisation.
    cap = _candidate_capacity(p.topk)
    if overflow and bool(torch.cat([c for *_, c in overflow]).gt(cap).any()):
        for s0, s1, count in overflow:
            if bool(count.gt(cap).any()):
                n_cols = p.n_visible(s1 - 1)
                chunk = _workspace(ws, p.B * (s1 - s0) * n_cols).view(p.B, s1 - s0, n_cols)
                _select_full_rows(p, q, k, w, k_scale, chunk, s0, cfg, budget, out)
    return out.result()


def _workspace(ws: torch.Tensor, n: int) -> torch.Tensor:
    # Larger than the budget only when one block of rows alone exceeds it.
    return ws[:n] if n <= ws.numel() else torch.empty(n, dtype=ws.dtype, device=ws.device)


def _select_full_rows(p, q, k, w, k_scale, chunk, s0, cfg, budget, out: TopkOutput) -> None:
    """Scores of the chunk, then the exact top-k of whole rows, a few rows at a time (temporaries
    within about half of ``budget``); the selections go to ``out`` every ``FLUSH_BYTES`` of them."""
    B, r, n_cols = chunk.shape
    score_tile(q, k, w, chunk, s0=s0, T=p.T, ratio=p.ratio, offset=p.offset, k_scale=k_scale, **cfg)
    step = max(1, budget // 2 // (FULL_ROW_BYTES * n_cols))
    flush_rows = max(step, FLUSH_BYTES // (12 * p.topk))   # fp32 value + int64 index per entry
    for b in range(B):
        for f0 in range(0, r, flush_rows):
            f1 = min(r, f0 + flush_rows)
            parts = [exact_topk(chunk[b, i:min(f1, i + step)], p.topk) for i in range(f0, f1, step)]
            out.write(s0 + f0, s0 + f1, torch.cat([v for v, _ in parts]), torch.cat([i for _, i in parts]),
                      batch=b)


def _candidate_capacity(topk: int) -> int:
    """Candidate slots per row: ``CANDIDATES_PER_K · topk`` rounded up to a power of two."""
    return 1 << (CANDIDATES_PER_K * topk - 1).bit_length()


def _group_size(min_visible: int, topk: int, block_t: int) -> int:
    """Largest power-of-two group (≤ ``block_t``) that leaves every row of the chunk at least
    ``GROUPS_PER_K · topk`` groups; 0 when that is below ``MIN_GROUP`` (select the full rows)."""
    g = min(block_t, min_visible // (GROUPS_PER_K * topk))
    if g < MIN_GROUP:
        return 0
    return 1 << (g.bit_length() - 1)


def _select_with_threshold(p, scores: torch.Tensor, gmax: torch.Tensor, group: int, out: TopkOutput, s0: int):
    """Write the top-k of ``scores`` [B, r, N] (queries ``s0 ..``) into ``out`` from the candidates
    at or above the k-th largest group maximum (``gmax`` [B, r, G], maxima of ``group`` columns),
    ``SELECT_ROWS`` rows at a time (that bounds the candidate buffers). Returns the per-row
    candidate counts; rows above the capacity are incomplete and must be re-selected."""
    B, r, N = scores.shape
    counts = []
    for b in range(B):
        for i0 in range(0, r, SELECT_ROWS):
            i1 = min(r, i0 + SELECT_ROWS)
            th = kth_group_max(gmax[b, i0:i1], p.topk)
            cv, ci = gather_candidates(scores[b, i0:i1], th, group, _candidate_capacity(p.topk))
            sc = None if out.scores is None else out.scores[b:b + 1]
            select_candidates(cv, ci, th.count, out.idx[b:b + 1], sc, s0=s0 + i0, T=p.T, ratio=p.ratio,
                              offset=p.offset)
            counts.append(th.count)
    return counts[0] if len(counts) == 1 else torch.cat(counts)


def _precompile(p: IndexerProblem, quantize: bool = False) -> None:
    """Launch the score kernel once per column-group variant on the first rows, and the selection
    kernels once per variant, so that a timed call at long S (where the largest groups first
    appear) compiles nothing. The slice's width is taken both as a multiple of 16 and not, since
    Triton specialises integer arguments on that.
    ``quantize``: the path quantises float input to e4m3 first (``stream_fp8``)."""
    block_s = _tile_config(p.q)["block_s"]
    rows = min(p.S, block_s)
    if p.is_fp8 or quantize:
        q, k, qs, ks = ((p.q, p.k, p.q_scale, p.k_scale) if p.is_fp8 else quantize_fp8(p.q[:, :rows], p.k))
        w = (p.w[:, :rows] * qs[:, :rows]).contiguous()
        if q.device.type == "cpu":
            q, k = q.float(), k.float()
    else:
        q, k, w, ks = _interpretable(p.q), _interpretable(p.k), p.w, None
    cfg = _tile_config(q)
    groups = [0] + [g for g in (1 << i for i in range(2, 12)) if MIN_GROUP <= g <= cfg["block_t"]]
    for group in groups:
        for n_cols in (2 * cfg["block_t"], 2 * cfg["block_t"] + 1):
            ws = torch.empty(p.B, rows, n_cols, dtype=torch.float32, device=p.device)
            gmax = torch.empty(p.B, rows, -(-n_cols // max(group, 1)), dtype=torch.float32, device=p.device)
            score_tile(q, k, w, ws, s0=0, T=p.T, ratio=p.ratio, offset=p.offset, k_scale=ks,
                       group_max=gmax if group else None, group=group, **cfg)
    g0 = GROUPS_PER_K * p.topk
    for group in groups[1:]:
        shapes = [(g, g * group) for m in (1, 2, 4) for g in (g0 * m, g0 * m + 1)]
        _precompile_selection(p, group, shapes + [(g0, g0 * group - 1), (g0 + 4, (g0 + 4) * group)])
    widest = min(DIRECT_MAX_COLS, 1 << max(4, (p.T - 1).bit_length()))   # no wider than the keys
    widths = [w for i in range(4, widest.bit_length()) for w in (1 << i, (1 << i) - 1)]
    _precompile_selection(p, 1, [(w, w) for w in widths])


def _precompile_selection(p: IndexerProblem, group: int, shapes) -> None:
    """Run the three selection kernels on random rows with ``group``-wide column groups, once per
    ``(n_groups, n_cols)`` of ``shapes``: the variants a long call meets are the register widths
    of :func:`kth_group_max` (group counts from ``GROUPS_PER_K · topk`` to 4x that; for group 1
    every power of two up to ``DIRECT_MAX_COLS``) and widths multiples of 16 or not."""
    rows = 16
    out_idx = torch.empty(1, rows, p.topk, dtype=torch.int32, device=p.device)
    for n_groups, n_cols in shapes:
        ws = torch.randn(rows, n_cols, device=p.device)
        gmax = torch.nn.functional.pad(ws, (0, n_groups * group - n_cols), value=float("-inf"))
        gmax = gmax.view(rows, n_groups, group).amax(dim=2).contiguous()
        th = kth_group_max(gmax, p.topk)
        cv, ci = gather_candidates(ws, th, group, _candidate_capacity(p.topk))
        select_candidates(cv, ci, th.count, out_idx, None, s0=0, T=p.T, ratio=p.ratio, offset=p.offset)


def _interpretable(x: torch.Tensor) -> torch.Tensor:
    # The Triton interpreter (CPU) has no bf16 / fp8 arithmetic: compute those in fp32 there.
    if x.device.type == "cpu" and x.dtype != torch.float32:
        return x.float()
    return x


@register_path("stream", description="Triton fused score tile + exact top-k over a bounded workspace",
               needs_cuda=True, precompile=_precompile)
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
               needs_cuda=True, fp8=True, precompile=functools.partial(_precompile, quantize=True))
def stream_fp8(p, *, return_scores=False, workspace_bytes=None, chunk_q=None, **_):
    if p.is_fp8:
        q8, k8, qs, ks = p.q, p.k, p.q_scale, p.k_scale
    else:
        q8, k8, qs, ks = quantize_fp8(p.q, p.k)
    return _run_fp8(p, q8, k8, qs, ks, return_scores=return_scores, workspace_bytes=workspace_bytes,
                    chunk_q=chunk_q)
