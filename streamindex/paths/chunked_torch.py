"""``chunked_torch``: query-chunked head-summed logits under a byte budget, then top-k per
chunk, as vLLM / SGLang serve the indexer in prefill. Memory: the budget (plus outputs)."""
from __future__ import annotations

from ..chunking import row_chunks
from ..registry import register_path
from ..select import exact_topk
from .output import TopkOutput
from .torch_scores import head_summed_scores, mask_invisible_, score_operands

DEFAULT_WORKSPACE = 2 << 30
# Scratch per (row, visible key): fp32 accumulator + fp32 per-head temporary + top-k's tie check.
BYTES_PER_SCORE = 4 + 4 + 1


@register_path("chunked_torch", description="query chunks of head-summed fp32 logits under a byte budget")
def chunked_torch(p, *, return_scores=False, workspace_bytes=None, chunk_q=None, **_):
    q, k = score_operands(p)
    out = TopkOutput(p, return_scores)
    budget = workspace_bytes or DEFAULT_WORKSPACE
    for s0, s1, n_cols in row_chunks(p, bytes_per_col=BYTES_PER_SCORE, budget=budget, max_rows=chunk_q):
        if n_cols == 0:
            out.write_empty(s0, s1)
            continue
        score = head_summed_scores(q[:, s0:s1], k[:, :n_cols], p.w[:, s0:s1])
        mask_invisible_(score, s0=s0, t0=0, ratio=p.ratio, offset=p.offset)
        out.check_scores(score, s0)
        vals, idx = exact_topk(score.view(-1, n_cols), p.topk)
        del score
        out.write(s0, s1, vals, idx)
    return out.result()
