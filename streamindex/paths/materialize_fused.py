"""``materialize_fused``: head-summed fp32 scores ``[B, S, T]`` (what the TileLang / DeepGEMM
logits kernels return), heads accumulated one by one, mask, top-k. Memory ``2·S·T·4`` bytes."""
from __future__ import annotations

from ..registry import register_path
from ..select import exact_topk
from .output import TopkOutput
from .torch_scores import head_summed_scores, mask_invisible_, score_operands


@register_path("materialize_fused", description="head-summed fp32 [B,S,T] scores, then top-k")
def materialize_fused(p, *, return_scores=False, **_):
    q, k = score_operands(p)
    score = head_summed_scores(q, k, p.w)
    mask_invisible_(score, s0=0, t0=0, ratio=p.ratio, offset=p.offset)
    out = TopkOutput(p, return_scores)
    out.check_scores(score, 0)
    vals, idx = exact_topk(score.view(p.B * p.S, p.T), p.topk)
    del score
    out.write(0, p.S, vals, idx)
    return out.result()
