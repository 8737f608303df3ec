"""Random CSA attention cases and a tiny fp64 indexer oracle, shared by tests/test_csa_cpu.py,
tests/test_csa_gpu.py and streamindex/csa/devcheck.py."""
from __future__ import annotations

import torch

from ..oracle import oracle_topk


def make_case(*, B=1, S=20, Hq=16, D=32, T=12, topk=6, window=8, offset=0, ratio=4, sink=True, neg_frac=0.2,
              causal=True, dtype=torch.bfloat16, device="cpu", seed=0):
    """Random ``(q, kv_compressed, kv_window, sink, indices, offset, window)``.

    Indices are distinct per row, drawn among the compressed rows visible from the query
    (``t < (offset+s+1)//ratio`` when ``causal``), padded with ``-1`` when fewer than ``topk`` are
    visible, and a further ``neg_frac`` of the slots blanked to ``-1`` at random.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, Hq, D, generator=g).to(dtype)
    kvc = torch.randn(B, T, D, generator=g).to(dtype)
    kvw = torch.randn(B, offset + S + 3, D, generator=g).to(dtype)
    sk = (torch.randn(Hq, generator=g) * 2) if sink else None
    idx = torch.full((B, S, topk), -1, dtype=torch.int32)
    for b in range(B):
        for s in range(S):
            n_vis = min(T, (offset + s + 1) // ratio) if causal else T
            perm = torch.randperm(T, generator=g)[:topk] if not causal else torch.randperm(max(n_vis, 1), generator=g)
            perm = perm[:min(topk, n_vis)]
            idx[b, s, :len(perm)] = perm.int()
            # shuffle the -1 slots in among the valid ones
            idx[b, s] = idx[b, s][torch.randperm(topk, generator=g)]
    drop = torch.rand(B, S, topk, generator=g) < neg_frac
    idx[drop] = -1
    dev = torch.device(device)
    return (q.to(dev), kvc.to(dev), kvw.to(dev), None if sk is None else sk.to(dev), idx.to(dev), offset, window)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.isfinite(a).all(), "output has NaN / Inf (unwritten or broken)"
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def oracle_indexer(q, k, w, topk, *, ratio, offset):
    """fp64 indexer top-k with :func:`streamindex.indexer_topk`'s signature (int32, ``-1`` padded,
    same batching as the input), for tiny CPU tests: :func:`streamindex.oracle.oracle_topk`."""
    idx = oracle_topk(q, k, w, topk, ratio=ratio, offset=offset)[0].int()
    return idx.squeeze(0) if q.dim() == 3 else idx
