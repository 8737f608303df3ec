"""Unit tests of the exact selection, chunk plans and metrics."""
import torch

from streamindex.chunking import row_chunks
from streamindex.metrics import overlap, tie_aware_recall, useful_flops
from streamindex.problem import IndexerProblem
from streamindex.select import exact_topk, merge_topk

from .cases import random_case


def stable_reference(values, k):
    vals, idx = torch.sort(values, dim=1, descending=True, stable=True)
    return vals[:, :k], idx[:, :k]


def test_exact_topk_with_heavy_ties():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(-3, 4, (64, 50), generator=g).float()
    values[values == 0] = -0.0  # -0.0 and +0.0 are equal scores
    values[3] = 1.0
    for k in (1, 5, 17, 50, 80):
        v, i = exact_topk(values, k, base=100)
        rv, ri = stable_reference(values + 0.0, k)
        assert torch.equal(i, ri + 100) and torch.equal(v, rv)


def test_merge_topk_orders_by_index_on_ties():
    va = torch.tensor([[3.0, 1.0, 1.0]])
    ia = torch.tensor([[9, 7, 8]])
    vb = torch.tensor([[1.0, float("-inf")]])
    ib = torch.tensor([[2, 0]])
    v, i = merge_topk(va, ia, vb, ib, 3)
    assert torch.equal(i, torch.tensor([[9, 2, 7]])) and torch.equal(v, torch.tensor([[3.0, 1.0, 1.0]]))


def test_row_chunks_cover_and_respect_budget():
    q, k, w = random_case(300, B=2, ratio=4)
    p = IndexerProblem.from_args(q, k, w, 4, ratio=4, offset=7)
    chunks = list(row_chunks(p, bytes_per_col=6, budget=6 * 2 * 16 * 40, multiple=16))
    assert chunks[0][0] == 0 and chunks[-1][1] == 300
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for s0, s1, n in chunks:
        assert n == p.n_visible(s1 - 1)
        assert (s1 - s0) * max(n, 1) * 6 * 2 <= 6 * 2 * 16 * 40 or s1 - s0 <= 16
    # Early chunks see fewer keys, so they hold more rows.
    assert chunks[0][1] - chunks[0][0] > chunks[-1][1] - chunks[-1][0]


def test_recall_counts_ties_duplicates_and_invisible():
    q, k, w = random_case(40, B=1, ratio=1, seed=4)
    from streamindex.oracle import oracle_topk
    oi, _ = oracle_topk(q, k, w, 5, ratio=1)
    idx = oi.clone().int()
    assert tie_aware_recall(idx, q, k, w, topk=5, ratio=1).min() == 1.0
    bad = idx.clone()
    bad[0, 30, 0] = bad[0, 30, 1]           # duplicate
    bad[0, 31, 0] = 35                      # invisible from query 31
    bad[0, 32, 4] = -1                      # missing
    r = tie_aware_recall(bad, q, k, w, topk=5, ratio=1)[0]
    assert r[30] == 0.8 and r[31] == 0.8 and r[32] == 0.8 and r[33] == 1.0
    # Query 0 sees one key: recall 1 with [0, -1, ...].
    assert r[0] == 1.0


def test_recall_is_tie_aware():
    q = torch.ones(1, 4, 1, 2)
    k = torch.ones(1, 4, 2)                 # all keys tie
    w = torch.ones(1, 4, 1)
    idx = torch.tensor([[[3, 2], [3, 2], [3, 2], [3, 2]]], dtype=torch.int32)
    r = tie_aware_recall(idx, q, k, w, topk=2, ratio=1, offset=3)
    assert r.min() == 1.0


def test_overlap_and_flops():
    a = torch.tensor([[1, 2, 3, -1], [-1, -1, -1, -1]])
    b = torch.tensor([[3, 2, 9, -1], [-1, -1, -1, -1]])
    assert torch.allclose(overlap(a, b), torch.tensor([2 / 3, 1.0], dtype=torch.float64))
    # S = 8, ratio 4: visible counts 0,0,0,1,1,1,1,2 → 6 pairs.
    assert useful_flops(8, 2, H=2, D=4, ratio=4) == 2 * 2 * 4 * 6
