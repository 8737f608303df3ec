"""CSA attention test inputs, shared by tests/test_csa_cpu.py, tests/test_csa_gpu.py and
tools/csa_devcheck.py: random and adversarial index sets, a comparison against the dense
reference on sampled row blocks, and a tiny fp64 indexer oracle."""
from __future__ import annotations

import torch

from streamindex.oracle import oracle_topk


def random_indices(B: int, S: int, T: int, topk: int, *, ratio: int = 4, offset: int = 0, causal: bool = True,
                   neg_frac: float = 0.0, dup_frac: float = 0.0, generator: torch.Generator, device="cpu",
                   rows_per_step: int = 1024) -> torch.Tensor:
    """int32 ``[B, S, topk]``: per row, distinct indices drawn among the compressed rows visible
    from the query (``t < (offset+s+1)//ratio`` when ``causal``, else all ``T``), ``-1`` where fewer
    than ``topk`` exist, slots shuffled; then ``neg_frac`` of the slots blanked to ``-1`` and
    ``dup_frac`` of them overwritten with another index of the same row (duplicates). Drawn on
    ``generator``'s device in row slices (memory ``rows_per_step·T`` floats)."""
    gdev = torch.device(generator.device)
    out = torch.empty(B, S, topk, dtype=torch.int32, device=gdev)
    k = min(topk, T)
    t_ar = torch.arange(T, device=gdev)
    for b in range(B):
        for s0 in range(0, S, rows_per_step):
            s1 = min(S, s0 + rows_per_step)
            r = torch.rand(s1 - s0, T, generator=generator, device=gdev)
            if causal:
                vis = (offset + torch.arange(s0, s1, device=gdev) + 1) // ratio
                r = r.masked_fill(t_ar[None, :] >= vis[:, None], -1.0)
            val, idx = r.topk(k, dim=1)
            idx = torch.where(val >= 0, idx, -1)
            if k < topk:
                idx = torch.cat([idx, idx.new_full((s1 - s0, topk - k), -1)], 1)
            perm = torch.rand(s1 - s0, topk, generator=generator, device=gdev).argsort(1)
            out[b, s0:s1] = idx.gather(1, perm).int()
    if neg_frac > 0:
        out[torch.rand(out.shape, generator=generator, device=gdev) < neg_frac] = -1
    if dup_frac > 0:
        src = torch.randint(0, topk, out.shape, generator=generator, device=gdev)
        dup = torch.rand(out.shape, generator=generator, device=gdev) < dup_frac
        copied = out.gather(2, src.long())
        out = torch.where(dup & (copied >= 0), copied, out)
    return out.to(device)


def make_case(*, B=1, S=20, Hq=16, D=32, T=12, topk=6, window=8, offset=0, ratio=4, sink=True, neg_frac=0.2,
              dup_frac=0.0, causal=True, kv_shared=False, dtype=torch.bfloat16, device="cpu", seed=0):
    """Random ``(q, kv_compressed, kv_window, sink, indices, offset, window)``.

    Indices: :func:`random_indices`. ``kv_shared``: ``kv_compressed`` *is* ``kv_window`` (``T`` is
    ignored, ``T = S_kv``), and every row's indices are drawn among its own window positions, so
    each selected compressed row is also a window row of the same query (the same key attended
    twice). Drawn on ``device`` (CPU generator for CPU, a CUDA generator otherwise)."""
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(seed)
    S_kv = offset + S + 3
    q = torch.randn(B, S, Hq, D, generator=g, device=dev).to(dtype)
    kvw = torch.randn(B, S_kv, D, generator=g, device=dev).to(dtype)
    kvc = kvw if kv_shared else torch.randn(B, T, D, generator=g, device=dev).to(dtype)
    sk = (torch.randn(Hq, generator=g, device=dev) * 2) if sink else None
    if kv_shared:
        pos = offset + torch.arange(S, device=dev)
        lo = (pos - window + 1).clamp_min(0)
        n = pos - lo + 1                                    # window rows of each query
        k = min(topk, window)
        r = torch.rand(B, S, window, generator=g, device=dev)
        r = r.masked_fill(torch.arange(window, device=dev)[None, None, :] >= n[None, :, None], -1.0)
        val, j = r.topk(k, dim=2)
        idx = torch.where(val >= 0, lo[None, :, None] + j, -1)
        if k < topk:
            idx = torch.cat([idx, idx.new_full((B, S, topk - k), -1)], 2)
        idx = idx.int()
    else:
        idx = random_indices(B, S, T, topk, ratio=ratio, offset=offset, causal=causal, neg_frac=neg_frac,
                             dup_frac=dup_frac, generator=g, device=dev)
    return q, kvc, kvw, sk, idx, offset, window


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a - b‖ / ‖b‖`` in fp64; fails on NaN / Inf in ``a`` (an unwritten or broken output)."""
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.isfinite(a).all(), "output has NaN / Inf (unwritten or broken)"
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def sampled_rel_err(out, q, kvc, kvw, sink, idx, offset, window, *, blocks=4, rows=16) -> float:
    """Largest :func:`rel_err` of ``out`` against the dense reference over ``blocks`` row blocks of
    ``rows`` consecutive queries spread over ``[0, S)`` (first and last included): checks a long
    sequence without a dense pass over all of it."""
    from streamindex.csa import csa_attention_reference

    S = q.shape[1]
    span = max(0, S - rows)
    starts = sorted({round(i * span / max(1, blocks - 1)) for i in range(blocks)})
    worst = 0.0
    for a in starts:
        b = min(S, a + rows)
        ref = csa_attention_reference(q[:, a:b], kvc, kvw, sink, idx[:, a:b], offset=offset + a, window=window,
                                      out_dtype=torch.float32)
        worst = max(worst, rel_err(out[:, a:b], ref))
    return worst


def oracle_indexer(q, k, w, topk, *, ratio, offset):
    """fp64 indexer top-k with :func:`streamindex.indexer_topk`'s signature (int32, ``-1`` padded,
    same batching as the input), for tiny CPU tests: :func:`streamindex.oracle.oracle_topk`."""
    idx = oracle_topk(q, k, w, topk, ratio=ratio, offset=offset)[0].int()
    return idx.squeeze(0) if q.dim() == 3 else idx
