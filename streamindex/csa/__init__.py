"""DeepSeek-V4 CSA step: streaming indexer top-k, then sparse attention over the selected
compressed KV rows plus a sliding window of raw KV (TileLang kernel, Triton fallback, torch
reference). Entry points: :func:`csa_forward` (whole step, chunked prefill) and
:func:`sparse_attention` (attention only)."""
from .attention import ATTN_IMPLS, sparse_attention
from .forward import csa_forward
from .reference import csa_attention_reference

__all__ = ["csa_forward", "sparse_attention", "csa_attention_reference", "ATTN_IMPLS"]
