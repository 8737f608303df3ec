"""Every registered path against the fp64 oracle at small sizes (CPU; Triton under the interpreter)."""
import pytest
import torch

import streamindex as si
from streamindex.metrics import tie_aware_recall
from streamindex.oracle import oracle_topk
from streamindex.quant import quantize_fp8

from .cases import integer_case, random_case, zero_case

PATHS = [p for p in si.list_paths() if not si.get_path(p).fp8]
# Small knobs so that every path really chunks: several query chunks, key chunks below topk.
KNOBS = dict(workspace_bytes=6 * 2 * 16 * 24, chunk_q=19, chunk_t=5)


def run(path, q, k, w, topk, **kw):
    return si.indexer_topk(q, k, w, topk, path=path, return_scores=True, **KNOBS, **kw)


def check_format(idx, scores, topk):
    assert idx.dtype == torch.int32 and scores.dtype == torch.float32
    assert idx.shape[-1] == topk and scores.shape == idx.shape
    assert torch.equal(idx < 0, torch.isneginf(scores)), "-1 slots must hold -inf and only they"
    finite = torch.where(idx >= 0, scores, torch.finfo(torch.float32).min)
    assert (finite[..., :-1] >= finite[..., 1:]).all(), "scores must be descending"


def assert_exact(path, q, k, w, topk, ratio, offset=0):
    idx, scores = run(path, q, k, w, topk, ratio=ratio, offset=offset)
    check_format(idx, scores, topk)
    oi, ov = oracle_topk(q, k, w, topk, ratio=ratio, offset=offset)
    assert torch.equal(idx.long(), oi), f"{path}: indices differ from the oracle"
    # Integer inputs: every score is exact, so the scores must equal the oracle's bit for bit.
    assert torch.equal(scores.double(), ov)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ratio,offset", [(1, 0), (2, 0), (3, 5), (4, 0), (4, 13)])
def test_random_matches_oracle(path, ratio, offset):
    S, topk = 45, 7
    q, k, w = random_case(S, ratio=ratio, T=(offset + S) // ratio, seed=ratio * 31 + offset)
    idx, scores = run(path, q, k, w, topk, ratio=ratio, offset=offset)
    check_format(idx, scores, topk)
    oi, ov = oracle_topk(q, k, w, topk, ratio=ratio, offset=offset)
    rec = tie_aware_recall(idx, q, k, w, topk=topk, ratio=ratio, offset=offset)
    assert rec.min().item() == 1.0
    # Random fp32 scores have no ties: the order must be the oracle's.
    assert torch.equal(idx.long(), oi)
    fin = oi >= 0
    assert torch.allclose(scores.double()[fin], ov[fin], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_exact_ties_break_by_smaller_index(path, ratio):
    q, k, w = integer_case(41, ratio=ratio, seed=ratio)
    assert_exact(path, q, k, w, topk=6, ratio=ratio, offset=2)


@pytest.mark.parametrize("path", PATHS)
def test_all_zero_scores_give_first_keys(path):
    q, k, w = zero_case(24, ratio=1)
    idx, scores = run(path, q, k, w, 5, ratio=1)
    check_format(idx, scores, 5)
    s = torch.arange(24)[:, None]
    want = torch.where(torch.arange(5)[None, :] <= s, torch.arange(5)[None, :], -1)
    assert torch.equal(idx[0].long(), want)


@pytest.mark.parametrize("path", PATHS)
def test_T_below_topk_and_no_visible_key(path):
    # ratio 4, offset 0: queries 0..2 see nothing; T = 5 < topk = 8.
    q, k, w = random_case(23, T=5, ratio=4, seed=3)
    idx, scores = run(path, q, k, w, 8, ratio=4)
    check_format(idx, scores, 8)
    assert (idx[:, :3] == -1).all()
    n_vis = torch.clamp((torch.arange(23) + 1) // 4, max=5)
    assert torch.equal((idx >= 0).sum(-1), n_vis.expand(2, -1))
    oi, _ = oracle_topk(q, k, w, 8, ratio=4)
    assert torch.equal(idx.long(), oi)


@pytest.mark.parametrize("path", PATHS)
def test_unbatched_odd_sizes_and_bf16(path):
    q, k, w = random_case(37, H=3, D=20, B=1, ratio=3, dtype=torch.bfloat16, seed=9)
    idx = si.indexer_topk(q[0], k[0], w[0], 4, ratio=3, path=path, **KNOBS)
    assert idx.shape == (37, 4) and idx.dtype == torch.int32
    rec = tie_aware_recall(idx, q[0], k[0], w[0], topk=4, ratio=3)
    assert rec.min().item() == 1.0


@pytest.mark.parametrize("path", PATHS + ["stream_fp8"])
def test_fp8_inputs_match_dequantized_oracle(path):
    q, k, w = random_case(33, ratio=2, seed=5)
    q8, k8, qs, ks = quantize_fp8(q, k)
    idx, scores = si.indexer_topk(q8, k8, w, 6, ratio=2, path=path, q_scale=qs, k_scale=ks,
                                  return_scores=True, **KNOBS)
    check_format(idx, scores, 6)
    rec = tie_aware_recall(idx, q8, k8, w, topk=6, ratio=2, q_scale=qs, k_scale=ks)
    assert rec.min().item() == 1.0


def test_stream_fp8_quantizes_float_input():
    q, k, w = random_case(29, ratio=2, seed=6)
    idx = si.indexer_topk(q, k, w, 5, ratio=2, path="stream_fp8")
    q8, k8, qs, ks = quantize_fp8(q, k)
    rec = tie_aware_recall(idx, q8, k8, w, topk=5, ratio=2, q_scale=qs, k_scale=ks)
    assert rec.min().item() == 1.0


def test_paths_agree_on_default_knobs():
    q, k, w = random_case(50, ratio=4, seed=11)
    ref = si.indexer_topk(q, k, w, 8, path="materialize")
    for path in PATHS:
        assert torch.equal(si.indexer_topk(q, k, w, 8, path=path), ref), path


@pytest.mark.parametrize("ratio,topk", [(1, 2), (1, 3), (2, 2)])
def test_stream_threshold_selection_long_rows(ratio, topk, monkeypatch):
    # Rows that see >= 4·4·topk keys take the group-maximum threshold + candidate path.
    import streamindex.paths.stream as stream_mod
    calls = []
    real = stream_mod._select_with_threshold
    monkeypatch.setattr(stream_mod, "_select_with_threshold", lambda *a: calls.append(1) or real(*a))
    q, k, w = random_case(260, H=2, D=16, B=2, ratio=ratio, seed=ratio + topk)
    idx, scores = si.indexer_topk(q, k, w, topk, ratio=ratio, path="stream", return_scores=True,
                                  workspace_bytes=6 * 2 * 64 * 130)
    check_format(idx, scores, topk)
    oi, _ = oracle_topk(q, k, w, topk, ratio=ratio)
    assert torch.equal(idx.long(), oi)
    assert calls, "the threshold path was not exercised"


def test_stream_threshold_selection_overflow_falls_back():
    # All-zero scores: every entry reaches the threshold, candidates overflow, rows re-selected.
    q, k, w = zero_case(200, ratio=1)
    idx = si.indexer_topk(q, k, w, 2, ratio=1, path="stream")
    s = torch.arange(200)[:, None]
    want = torch.where(torch.arange(2)[None, :] <= s, torch.arange(2)[None, :], -1)
    assert torch.equal(idx[0].long(), want)


@pytest.mark.parametrize("path", ["stream", "stream_fp8", "materialize"])
def test_precompile_runs_and_changes_nothing(path):
    q, k, w = random_case(40, ratio=2, seed=12)
    before = si.indexer_topk(q, k, w, 3, ratio=2, path=path)
    si.precompile(q, k, w, 3, ratio=2, path=path)
    assert torch.equal(si.indexer_topk(q, k, w, 3, ratio=2, path=path), before)


def test_stream_full_rows_flushed_in_small_batches(monkeypatch):
    # Every few rows of a full-row chunk go to the output separately; batches must not mix up.
    import streamindex.paths.stream as stream_mod
    monkeypatch.setattr(stream_mod, "FLUSH_BYTES", 1)
    monkeypatch.setattr(stream_mod, "DIRECT_MAX_COLS", 0)        # short rows take the full-row path
    q, k, w = integer_case(70, B=2, ratio=2, seed=5)
    assert_exact("stream", q, k, w, 4, ratio=2)


@pytest.mark.parametrize("direct_max_cols", [0, 8192])
@pytest.mark.parametrize("ratio,offset", [(1, 0), (3, 5)])
def test_stream_short_rows_full_row_and_direct_paths(direct_max_cols, ratio, offset, monkeypatch):
    # Rows too short for column groups take either the full-row top-k (DIRECT_MAX_COLS = 0) or tau
    # straight from their scores (group 1), here in selection slices of 3 rows, with B = 2, ties,
    # rows that see fewer keys than topk and rows that see none.
    import streamindex.paths.stream as stream_mod
    monkeypatch.setattr(stream_mod, "DIRECT_MAX_COLS", direct_max_cols)
    monkeypatch.setattr(stream_mod, "SELECT_ROWS", 3)
    groups = []
    real = stream_mod._select_with_threshold
    monkeypatch.setattr(stream_mod, "_select_with_threshold", lambda *a: groups.append(a[3]) or real(*a))
    q, k, w = integer_case(37, B=2, ratio=ratio, T=(offset + 37) // ratio, seed=ratio + offset)
    assert_exact("stream", q, k, w, topk=9, ratio=ratio, offset=offset)
    assert set(groups) == ({1} if direct_max_cols else set())
