"""``stream`` / ``stream_fp8``: this project's memory-bounded path.

Per query chunk (rows sized by the workspace budget):

1. the Triton score kernel writes the chunk's head-summed scores into the workspace (causal
   tiles skipped) and the maximum of every ``group`` columns (rows of at most ``DIRECT_MAX_COLS``
   keys use ``group = 1``: the scores are their own maxima);
2. the k-th largest group maximum ``tau`` is a lower bound of the row's k-th score; one kernel
   finds it and lists the groups whose maximum reaches it, a second gathers the few entries
   ``>= tau`` from those groups only;
3. a row whose candidates do not fit their buffer (massive ties at the threshold) is selected
   exactly from its scores by a radix select (ties at the k-th score taken by smallest index,
   counted, not sorted); other rows pass through;
4. rows with more candidates than a quarter of the buffer are cut to their exact top k in place;
5. a last kernel sorts each row's (at most ~k) candidates on (score, -index) keys and writes the
   output row.

Every row takes these steps: no full-row ``torch.topk``, no re-scoring, no host
synchronisation inside the call (one flag read at the end when ``check_finite`` is on).

Exact for any visible width (1 .. T), any ``topk`` from 1 to ``MAX_TOPK`` and any tie structure.
Extra memory: the workspace plus the selection buffers and the outputs, whatever S is.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import torch

from ..chunking import row_chunks
from ..kernels.candidates import (KTH_WIDTHS, gather_candidates, kth_group_max, kth_register_width,
                                 radix_select, select_candidates, trim_candidates)
from ..kernels.score_tile import score_tile
from ..problem import IndexerProblem
from ..quant import quantize_fp8
from ..registry import register_path
from .output import TopkOutput

DEFAULT_WORKSPACE = 256 << 20
#: Largest ``topk`` the selection kernels hold (candidates up to 4·topk wide in registers).
MAX_TOPK = 2048
# Workspace bytes per (row, visible key): the fp32 score; the group maxima add 1/group of it.
BYTES_PER_SCORE = 4
# Groups per row are at least GROUPS_PER_K · topk where the rows allow groups of MIN_GROUP, so
# that tau sits inside the top (with 2·topk groups, random rows keep about 1.2–1.4·topk entries
# >= tau); shorter rows take the smallest group that keeps them within MAX_GROUPS.
GROUPS_PER_K = 2
MIN_GROUP = 2
# At most this many groups per row (the k-th group maximum is found in registers).
MAX_GROUPS = 8192
CANDIDATES_PER_K = 4
# Rows of at most this many keys are their own group maxima (group 1).
DIRECT_MAX_COLS = 8192
# Selection buffers (candidates: cap · 8 B per row) of one launch, at most about this many bytes:
# 2,048 rows for every topk up to 2,048 (fewer rows per launch left the V3.2 sort latency-bound).
SELECT_BYTES = 128 << 20
# Column groups are at most this wide where the rows allow more than GROUPS_PER_K · topk groups:
# the gather reads topk · group entries per row, the k-th search n / group maxima. At V4-Flash 1M,
# 64 against 128: gather 211 -> 140 ms, k-th search 30 -> 44 ms (probe11, H200).
LARGEST_GROUP = 64
# Row strides are padded to this many elements (16-byte aligned rows, one kernel variant).
ROW_ALIGN = 16


def _tile_config(q: torch.Tensor) -> dict:
    """Tile shape of the score kernel; measured on the H200 (docs/PERFORMANCE.md)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return dict(block_s=16, block_t=16, num_warps=1, num_stages=1)
    if q.element_size() == 1:
        return dict(block_s=64, block_t=128, num_warps=4, num_stages=3)
    return dict(block_s=64, block_t=128, num_warps=4, num_stages=4)


def _padded(n: int) -> int:
    return -(-n // ROW_ALIGN) * ROW_ALIGN


def _candidate_capacity(topk: int) -> int:
    """Candidate slots per row: ``CANDIDATES_PER_K · topk`` rounded up to a power of two."""
    return 1 << (CANDIDATES_PER_K * topk - 1).bit_length()


def _select_rows(topk: int) -> int:
    """Rows per selection launch: their candidate buffers stay within ``SELECT_BYTES``."""
    return max(64, min(2048, SELECT_BYTES // (8 * _candidate_capacity(topk))))


def _group_size(min_visible: int, n_cols: int, topk: int, block_t: int) -> int:
    """Power-of-two column group (≤ ``block_t``) of a chunk whose rows see ``min_visible`` ..
    ``n_cols`` keys: the largest (≤ ``LARGEST_GROUP``) that leaves every row
    ``GROUPS_PER_K · topk`` groups of at least ``MIN_GROUP``; else 1 when
    ``n_cols <= DIRECT_MAX_COLS``; else the smallest above 1. In every case doubled while the
    widest row has more than ``MAX_GROUPS`` groups."""
    g = min(block_t, LARGEST_GROUP, min_visible // (GROUPS_PER_K * topk))
    if g >= MIN_GROUP:
        g = 1 << (g.bit_length() - 1)
    elif n_cols <= DIRECT_MAX_COLS:
        return 1
    else:
        g = 2
    while g < block_t and -(-n_cols // g) > MAX_GROUPS:
        g *= 2
    return g


class _Selection:
    """The selection of one call: candidate buffers reused across chunks, launched per slice of
    rows (no host synchronisation)."""

    def __init__(self, p: IndexerProblem, out: TopkOutput, max_rows: int | None = None):
        """``max_rows``: the most rows one :meth:`run` gets (buffers no larger than that)."""
        self.p, self.out = p, out
        self.cap = _candidate_capacity(p.topk)
        rows = _select_rows(p.topk)
        self.rows = max(1, min(rows, max_rows)) if max_rows else rows
        self.vals = torch.empty((self.rows, self.cap), dtype=torch.float32, device=p.device)
        self.idx = torch.empty((self.rows, self.cap), dtype=torch.int32, device=p.device)

    def run(self, scores: torch.Tensor, gmax: torch.Tensor, group: int, s0: int, rows_per_b: int) -> None:
        """Select rows of ``scores`` ``[B·r, N]`` (row ``b·r + i`` = query ``s0 + i``) with their
        group maxima ``gmax`` ``[B·r, G]`` of ``group`` columns (``gmax is scores`` for group 1)."""
        p = self.p
        geo = dict(rows_per_b=rows_per_b, s0=s0, T=p.T, ratio=p.ratio, offset=p.offset)
        for i0 in range(0, scores.shape[0], self.rows):
            i1 = min(scores.shape[0], i0 + self.rows)
            vals, idx = self.vals[:i1 - i0], self.idx[:i1 - i0]
            th = kth_group_max(gmax[i0:i1], p.topk)
            gather_candidates(scores[i0:i1], th, group, self.cap, out=(vals, idx))
            radix_select(scores, th, vals, idx, row0=i0, topk=p.topk, **geo)
            trim_candidates(vals, idx, th, row0=i0, topk=p.topk, **geo)
            select_candidates(vals, idx, th.count, self.out.idx, self.out.scores, row0=i0, **geo)


def _coarsened(gmax: torch.Tensor, group: int) -> tuple[torch.Tensor, int]:
    """Group maxima of ``group · f`` columns from those of ``group`` (``gmax`` ``[R, G]``, ``f`` the
    least power of two that brings G to at most ``MAX_GROUPS``): rows longer than
    ``MAX_GROUPS · block_t``."""
    R, G = gmax.shape
    f = 1 << (-(-G // MAX_GROUPS) - 1).bit_length()
    pad = torch.nn.functional.pad(gmax, (0, -G % f), value=float("-inf"))
    return pad.view(R, -1, f).amax(dim=2).contiguous(), group * f


def _run(p: IndexerProblem, q, k, w, k_scale, *, return_scores, workspace_bytes, chunk_q):
    cfg = _tile_config(q)
    budget = workspace_bytes or DEFAULT_WORKSPACE
    plan = list(row_chunks(p, bytes_per_col=BYTES_PER_SCORE, budget=budget, multiple=cfg["block_s"],
                           max_rows=chunk_q))
    # No larger than the largest chunk needs (short problems fit in less than the budget).
    need = max(p.B * (s1 - s0) * _padded(n) for s0, s1, n in plan)
    ws = torch.empty(max(1, min(budget // BYTES_PER_SCORE, need)), dtype=torch.float32, device=p.device)
    gmax_buf = torch.empty(0, dtype=torch.float32, device=p.device)
    out = TopkOutput(p, return_scores)
    select = _Selection(p, out, max_rows=max((p.B * (s1 - s0) for s0, s1, _ in plan), default=1))
    for s0, s1, n_cols in plan:
        if n_cols == 0:
            out.write_empty(s0, s1)
            continue
        r, ld = s1 - s0, _padded(n_cols)
        scores = _workspace(ws, p.B * r * ld).view(p.B * r, ld)[:, :n_cols]
        group = _group_size(p.n_visible(s0), n_cols, p.topk, cfg["block_t"])
        gmax = scores
        if group > 1:
            G = -(-n_cols // group)
            if gmax_buf.numel() < p.B * r * _padded(G):
                gmax_buf = torch.empty(p.B * r * _padded(G), dtype=torch.float32, device=p.device)
            gmax = gmax_buf[:p.B * r * _padded(G)].view(p.B * r, _padded(G))[:, :G]
        score_tile(q, k, w, scores.unflatten(0, (p.B, r)), s0=s0, T=p.T, ratio=p.ratio, offset=p.offset,
                   nonfinite=out.nonfinite, k_scale=k_scale, group=group if group > 1 else 0,
                   group_max=gmax.unflatten(0, (p.B, r)) if group > 1 else None,
                   check_finite=p.scores_may_overflow, n_store=ld, n_groups_store=_padded(gmax.shape[1]), **cfg)
        if gmax.shape[1] > MAX_GROUPS:
            gmax, group = _coarsened(gmax, group)
        select.run(scores, gmax, group, s0, r)
    return out.result()


def _workspace(ws: torch.Tensor, n: int) -> torch.Tensor:
    # Larger than the budget only when one block of rows alone exceeds it.
    return ws[:n] if n <= ws.numel() else torch.empty(n, dtype=ws.dtype, device=ws.device)


def _precompile(p: IndexerProblem, quantize: bool = False) -> None:
    """Build every kernel variant a call on ``p`` can meet, on tiny buffers, so that a timed call at
    long S compiles nothing: the score kernel per column group the call's chunks reach, the k-th
    group maximum per register width (:data:`KTH_WIDTHS`), the gather per group, the radix select
    and the candidate sort. The selection kernels do not specialise on sizes
    (``do_not_specialize``); the score kernel does, but its store bounds and row strides are
    multiples of 16, so only a last chunk of a row count that is not a multiple of 16 (S not a
    multiple of 16) can meet a variant built here for 64-row chunks only. ``quantize``: the path
    quantises float input to e4m3 first (``stream_fp8``)."""
    _check_topk(p, "stream_fp8" if quantize else "stream")
    rows = min(p.S, _tile_config(p.q)["block_s"])
    if p.is_fp8 or quantize:
        q, k, qs, ks = ((p.q, p.k, p.q_scale, p.k_scale) if p.is_fp8 else quantize_fp8(p.q[:, :rows], p.k))
        w = (p.w[:, :rows] * qs[:, :rows]).contiguous()
        if q.device.type == "cpu":
            q, k = q.float(), k.float()
    else:
        q, k, w, ks = _interpretable(p.q), _interpretable(p.k), p.w, None
    cfg, dev = _tile_config(q), p.device
    widest = max(p.n_visible(0), p.n_visible(p.S - 1))
    groups = {_group_size(lo, n, p.topk, cfg["block_t"]) for n in _powers_up_to(widest) for lo in (n // 2, n)}
    if widest > MAX_GROUPS * cfg["block_t"]:             # coarsened maxima of the longest rows
        groups.add(cfg["block_t"] << (-(-widest // (MAX_GROUPS * cfg["block_t"])) - 1).bit_length())
    nonfinite = torch.zeros(1, dtype=torch.int32, device=dev)
    n_cols = 2 * cfg["block_t"]
    for group in sorted(g for g in groups | {0} if g != 1 and g <= cfg["block_t"]):
        ws = torch.empty(p.B * rows, _padded(n_cols), dtype=torch.float32, device=dev)
        gmax = torch.empty(p.B * rows, _padded(n_cols), dtype=torch.float32, device=dev)[:, :n_cols // max(group, 1)]
        score_tile(q, k, w, ws.unflatten(0, (p.B, rows)), s0=0, T=p.T, ratio=p.ratio, offset=p.offset,
                   nonfinite=nonfinite, k_scale=ks, group_max=gmax.unflatten(0, (p.B, rows)) if group else None,
                   group=group, n_store=_padded(n_cols), n_groups_store=_padded(n_cols // max(group, 1)), **cfg)
    rows = 4                                             # the selection kernels: a few rows suffice
    sel = _Selection(p, TopkOutput(dataclasses.replace(p, q=p.q[:, :rows], w=p.w[:, :rows]), False), max_rows=rows)
    most_groups = kth_register_width(min(widest, max(MAX_GROUPS if len(groups) > 1 else 0, DIRECT_MAX_COLS)))
    for width in (wd for wd in KTH_WIDTHS if wd <= most_groups):
        scores = torch.randn(rows, width, device=dev)
        sel.run(scores, scores, 1, 0, rows)
    for group in sorted(groups - {1}):
        scores = torch.randn(rows, _padded(16 * group), device=dev)[:, :16 * group]
        sel.run(scores, scores.reshape(rows, 16, group).amax(2), group, 0, rows)


def _powers_up_to(n: int):
    """1, 2, 4, ... below ``n``, then ``n``."""
    x = 1
    while x < n:
        yield x
        x *= 2
    yield n


def _interpretable(x: torch.Tensor) -> torch.Tensor:
    # The Triton interpreter (CPU) has no bf16 / fp8 arithmetic: compute those in fp32 there.
    if x.device.type == "cpu" and x.dtype != torch.float32:
        return x.float()
    return x


def _check_topk(p: IndexerProblem, path: str) -> None:
    if p.topk > MAX_TOPK:
        raise ValueError(f"topk must be <= {MAX_TOPK} on path {path!r} (its candidate buffers are 4·topk wide), "
                         f"got {p.topk}; use path='chunked_torch' or 'partition_merge' for larger topk")


@register_path("stream", description="Triton fused score tile + exact top-k over a bounded workspace",
               needs_cuda=True, precompile=_precompile)
def stream(p, *, return_scores=False, workspace_bytes=None, chunk_q=None, **_):
    _check_topk(p, "stream")
    if p.is_fp8:
        return _run_fp8(p, p.q, p.k, p.q_scale, p.k_scale, return_scores=return_scores,
                        workspace_bytes=workspace_bytes, chunk_q=chunk_q)
    return _run(p, _interpretable(p.q), _interpretable(p.k), p.w, None, return_scores=return_scores,
                workspace_bytes=workspace_bytes, chunk_q=chunk_q)


def _run_fp8(p, q8, k8, q_scale, k_scale, **kw):
    # relu(qs·ks·x) = qs·ks·relu(x) because the scales are > 0 (IndexerProblem checks it): q's
    # scales fold into w, k's are applied per column.
    w = (p.w * q_scale).contiguous()
    if q8.device.type == "cpu":
        q8, k8 = q8.float(), k8.float()
    return _run(p, q8, k8, w, k_scale, **kw)


@register_path("stream_fp8", description="stream with e4m3 q/k and per-token scales (quantises bf16 input)",
               needs_cuda=True, fp8=True, precompile=functools.partial(_precompile, quantize=True))
def stream_fp8(p, *, return_scores=False, workspace_bytes=None, chunk_q=None, **_):
    _check_topk(p, "stream_fp8")
    if p.is_fp8:
        q8, k8, qs, ks = p.q, p.k, p.q_scale, p.k_scale
    else:
        q8, k8, qs, ks = quantize_fp8(p.q, p.k)
    return _run_fp8(p, q8, k8, qs, ks, return_scores=return_scores, workspace_bytes=workspace_bytes,
                    chunk_q=chunk_q)
