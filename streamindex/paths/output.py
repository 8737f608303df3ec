"""Output buffers of a path: int32 indices, and fp32 scores only when the caller asked."""
from __future__ import annotations

import torch

from ..problem import IndexerProblem
from ..select import finalize


class TopkOutput:
    """``idx`` int32 ``[B, S, topk]`` (and ``scores`` fp32 when asked), filled chunk by chunk, and
    ``nonfinite`` (int32 ``[1]`` on the device): set by the paths when a visible score is NaN or
    infinite, read once by :meth:`result` -- only for problems whose inputs do not rule out fp32
    overflow (``scores_may_overflow``); otherwise nothing is checked and nothing syncs."""

    def __init__(self, p: IndexerProblem, return_scores: bool):
        self.p = p
        self.idx = torch.empty(p.B, p.S, p.topk, dtype=torch.int32, device=p.device)
        self.scores = (torch.empty(p.B, p.S, p.topk, dtype=torch.float32, device=p.device)
                       if return_scores else None)
        self.nonfinite = torch.zeros(1, dtype=torch.int32, device=p.device)

    def check_scores(self, scores: torch.Tensor, s0: int, t0: int = 0) -> None:
        """Flag (no host sync) when ``scores`` ``[B, r, c]`` -- keys ``t0 .. t0+c-1`` of queries ``s0 ..``,
        invisible entries already ``-inf`` -- hold a visible entry that is NaN or infinite: more
        non-finite entries in a row than it has invisible ones."""
        if not self.p.scores_may_overflow:
            return
        r, c = scores.shape[-2:]
        invisible = c - (self.p.visible_counts(s0, s0 + r) - t0).clamp(min=0, max=c)
        bad = (~torch.isfinite(scores)).sum(dim=-1) > invisible
        self.nonfinite.bitwise_or_(bad.any().int().view(1))

    def write(self, s0: int, s1: int, vals: torch.Tensor, idx: torch.Tensor, batch: int | None = None) -> None:
        """Store the selection of queries ``[s0, s1)`` (``-1``/``-inf`` padded): ``[B·(s1-s0), k']``
        for every batch, or ``[s1-s0, k']`` for batch ``batch`` alone."""
        n_vis = self.p.visible_counts(s0, s1)
        if batch is None:
            n_vis = n_vis.repeat(self.p.B)
        out_idx, out_val = finalize(vals, idx, n_vis, self.p.topk)
        dst = slice(None) if batch is None else slice(batch, batch + 1)
        self.idx[dst, s0:s1] = out_idx.view(-1, s1 - s0, out_idx.shape[-1])
        if self.scores is not None:
            self.scores[dst, s0:s1] = out_val.view(-1, s1 - s0, out_val.shape[-1])

    def write_empty(self, s0: int, s1: int) -> None:
        """Queries ``[s0, s1)`` see no key: all ``-1`` / ``-inf``."""
        self.idx[:, s0:s1] = -1
        if self.scores is not None:
            self.scores[:, s0:s1] = float("-inf")

    def result(self):
        """``(idx, scores)``; raises ValueError when checks are on and a visible score overflowed fp32."""
        if self.p.scores_may_overflow and bool(self.nonfinite.item()):
            raise ValueError("some visible scores are not finite in fp32 although the inputs are (|q|, |k| or w "
                             "so large that the head sum overflows): scale the inputs down; with "
                             "check_finite=False the indices of such rows are unspecified")
        return self.idx, self.scores
