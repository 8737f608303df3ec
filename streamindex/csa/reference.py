"""Dense masked torch reference of DeepSeek-V4's CSA sparse attention (fp32 math).

For query ``s`` of batch ``b`` at absolute position ``pos = offset + s`` and query head ``h``::

    keys  = { kv_compressed[b, t] : t in indices[b, s], t >= 0 }            (top-k compressed rows)
          ∪ { kv_window[b, p]     : max(0, pos - window + 1) <= p <= pos }  (raw sliding window)
    l_j   = softmax_scale · q[b, s, h, :] · key_j                        (all D dims alike: the
                                                                           rotary part is applied before)
    out[b, s, h] = Σ_j exp(l_j) · key_j / ( Σ_j exp(l_j) + exp(sink[h]) )

The key doubles as the value (one shared KV head, MQA-style). The sink joins the denominator
only; ``sink=None`` means no sink. ``-1`` index slots are skipped. Keys are a multiset: an index
that appears twice in a row is two keys (gather semantics, what every kernel does), and a
compressed row whose content equals a window row is a separate key from it. The indexer never
repeats an index, so for its output the multiset is a set. Computed densely over all ``T``
compressed rows (each weighted by its multiplicity in the row, ``logit + log(count)``) and all
window positions with masks, in query chunks (memory ``chunk·Hq·(T + S_kv)·4`` bytes): for
tests, not for speed.
"""
from __future__ import annotations

import torch

from .checks import DEFAULT_WINDOW, attention_args


def csa_attention_reference(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                            window: int = DEFAULT_WINDOW, out_dtype: torch.dtype = torch.bfloat16,
                            chunk: int = 256) -> torch.Tensor:
    """Reference CSA attention.

    Args:
        q: ``[B, S, Hq, D]`` (or ``[S, Hq, D]``) bf16 / fp16 / fp32 queries (rope already applied).
        kv_compressed: ``[B, T, D]`` compressed KV (key = value), q's dtype.
        kv_window: ``[B, S_kv, D]`` raw KV by absolute position, ``S_kv >= offset + S``.
        sink: fp32 ``[Hq]`` per-head sink logit, or ``None``.
        indices: int32 ``[B, S, topk]`` rows of ``kv_compressed``; ``-1`` = empty slot.
        softmax_scale: logit scale, default ``D ** -0.5``.
        offset: absolute position of query 0 (chunked prefill).
        window: sliding-window length (V4: 128), the query's own token included.
    Returns:
        ``[B, S, Hq, D]`` in ``out_dtype`` (bf16 by default), unbatched if the inputs were.
    """
    a = attention_args(q, kv_compressed, kv_window, sink, indices, softmax_scale=softmax_scale, offset=offset,
                       window=window)
    B, S, H, D, T, S_kv, K = a.shape
    dev = a.q.device
    out = torch.empty(B, S, H, D, dtype=out_dtype, device=dev)
    kvc = a.kv_compressed.float()
    kvw = a.kv_window.float()
    sink_col = a.sink.view(1, 1, H, 1)
    p_idx = torch.arange(S_kv, device=dev)
    for b in range(B):
        for s0 in range(0, S, chunk):
            s1 = min(S, s0 + chunk)
            qc = a.q[b, s0:s1].float()                                     # [C, H, D]
            lc = torch.einsum("chd,td->cht", qc, kvc[b]) * a.softmax_scale  # [C, H, T]
            lw = torch.einsum("chd,pd->chp", qc, kvw[b]) * a.softmax_scale  # [C, H, S_kv]
            idx = a.indices[b, s0:s1].long()                              # [C, K]
            cnt = torch.zeros(s1 - s0, T + 1, dtype=torch.float32, device=dev)  # multiplicity of each row
            cnt.scatter_add_(1, torch.where(idx >= 0, idx, T), torch.ones(idx.shape, dtype=torch.float32, device=dev))
            log_cnt = cnt[:, :T].log()                                    # -inf where the row is not selected
            pos = torch.arange(s0, s1, device=dev).view(-1, 1) + a.offset
            mw = (p_idx.view(1, -1) <= pos) & (p_idx.view(1, -1) > pos - a.window)
            logits = torch.cat([lc + log_cnt[:, None, :],
                                lw.masked_fill(~mw[:, None, :], float("-inf")),
                                sink_col.expand(s1 - s0, 1, H, 1).reshape(s1 - s0, H, 1)], dim=2)
            p = torch.softmax(logits, dim=2)
            o = torch.einsum("cht,td->chd", p[..., :T], kvc[b]) + torch.einsum("chp,pd->chd", p[..., T:T + S_kv],
                                                                                kvw[b])
            out[b, s0:s1] = o.to(out_dtype)
    return out.squeeze(0) if a.squeeze else out


def csa_attention_loop(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                       window: int = DEFAULT_WINDOW) -> torch.Tensor:
    """Naive per-(b, s, h) fp64 loop, the oracle the reference is tested against. Returns fp64
    ``[B, S, Hq, D]``. Tiny sizes only."""
    a = attention_args(q, kv_compressed, kv_window, sink, indices, softmax_scale=softmax_scale, offset=offset,
                       window=window)
    B, S, H, D, T, S_kv, K = a.shape
    out = torch.zeros(B, S, H, D, dtype=torch.float64)
    for b in range(B):
        for s in range(S):
            pos = a.offset + s
            rows = [a.kv_compressed[b, int(t)].double() for t in a.indices[b, s].tolist() if t >= 0]
            rows += [a.kv_window[b, p].double() for p in range(max(0, pos - a.window + 1), pos + 1)]
            keys = torch.stack(rows).cpu()
            for h in range(H):
                lg = keys @ a.q[b, s, h].double().cpu() * a.softmax_scale
                m = max(float(lg.max()), float(a.sink[h]))
                e = torch.exp(lg - m)
                den = float(e.sum()) + float(torch.exp(torch.tensor(float(a.sink[h]) - m, dtype=torch.float64)))
                out[b, s, h] = (e[:, None] * keys).sum(0) / den
    return out.squeeze(0) if a.squeeze else out
