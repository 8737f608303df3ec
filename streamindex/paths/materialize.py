"""``materialize``: DeepSeek-V4's reference indexer — per-head fp32 logits ``[B, S, H, T]``,
relu·w, head-sum, mask, top-k. Memory ``S·H·T·4`` bytes twice over (logits and relu·w live
together, as in the reference expression): it OOMs an H200 at S = 65,536."""
from __future__ import annotations

from ..registry import register_path
from ..select import exact_topk
from .output import TopkOutput
from .torch_scores import logits_fp32, mask_invisible_, score_operands


@register_path("materialize", description="V4 reference: per-head fp32 [B,S,H,T] logits, then top-k")
def materialize(p, *, return_scores=False, **_):
    q, k = score_operands(p)
    B, S, H, D, T = p.B, p.S, p.H, p.D, p.T
    # (relu(einsum("bshd,btd->bsht")) * w[..., None]).sum(2), the reference expression.
    score = (logits_fp32(q.reshape(B, S * H, D), k).view(B, S, H, T).relu() * p.w.unsqueeze(-1)).sum(dim=2)
    mask_invisible_(score, s0=0, t0=0, ratio=p.ratio, offset=p.offset)
    out = TopkOutput(p, return_scores)
    out.check_scores(score, 0)
    vals, idx = exact_topk(score.view(B * S, T), p.topk)
    del score
    out.write(0, S, vals, idx)
    return out.result()
