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
        if path != "materialize":
            assert torch.equal(si.indexer_topk(q, k, w, 8, path=path), ref), path


# ---------------------------------------------------------------- stream's selection, branch by branch

class _Routes:
    """Records how ``stream`` selected each chunk -- ``("direct", 1)`` (rows are their own group
    maxima), ``("band", 2)`` (groups of 2) or ``("groups", g)`` -- the gather's candidate counts (a
    count above the capacity means the row overflowed and the radix select took it) and how many
    rows the trim cut to their top k (more than a quarter of the capacity)."""

    def __init__(self, monkeypatch):
        import streamindex.paths.stream as stream_mod
        self.kinds, self.counts, self.cap, self.trimmed = [], [], None, 0
        real_run, real_gather = stream_mod._Selection.run, stream_mod.gather_candidates
        real_trim = stream_mod.trim_candidates

        def trim(vals, idx, th, **kw):
            self.trimmed += int((th.count > vals.shape[1] // 4).sum())
            return real_trim(vals, idx, th, **kw)

        monkeypatch.setattr(stream_mod, "trim_candidates", trim)

        def run(sel, scores, gmax, group, s0, rows_per_b):
            self.cap = sel.cap
            self.kinds.append(("direct", 1) if group == 1 else ("band", 2) if group < 4 else ("groups", group))
            return real_run(sel, scores, gmax, group, s0, rows_per_b)

        def gather(ws, th, group, cap, **kw):
            res = real_gather(ws, th, group, cap, **kw)
            self.counts.append(th.count.clone())
            return res

        monkeypatch.setattr(stream_mod._Selection, "run", run)
        monkeypatch.setattr(stream_mod, "gather_candidates", gather)

    def overflowed(self) -> bool:
        return bool(torch.cat(self.counts).gt(self.cap).any()) if self.counts else False


@pytest.mark.parametrize("topk,direct_max_cols,branches", [
    (1, 0, {"band", "groups"}), (1, 20, {"direct", "groups"}),
    (3, 0, {"band", "groups"}), (3, 20, {"direct", "band", "groups"})])
def test_stream_every_row_width_and_branch(topk, direct_max_cols, branches, monkeypatch):
    # ratio 1: row s sees s + 1 keys, so one call covers widths 1, topk, the old band edges
    # (DIRECT_MAX_COLS + 1 and 16·topk ± 1) and long rows with column groups. The workspace makes
    # 16-row chunks at first: rows 0-15 (width <= 16) are their own group maxima (up to
    # DIRECT_MAX_COLS) or take groups of 2, longer rows take groups of 2, 4, ... as their width
    # allows 2·topk groups; in selection slices of 5 rows, B = 2, with exact ties (some overflow
    # into the radix select, some are trimmed to their top k before the sort).
    import streamindex.paths.stream as stream_mod
    monkeypatch.setattr(stream_mod, "DIRECT_MAX_COLS", direct_max_cols)
    monkeypatch.setattr(stream_mod, "SELECT_BYTES", 5 * 8 * stream_mod._candidate_capacity(topk))
    monkeypatch.setattr(stream_mod, "_select_rows", lambda topk: 5)
    routes = _Routes(monkeypatch)
    q, k, w = integer_case(150, B=2, ratio=1, seed=topk + direct_max_cols)
    idx, scores = si.indexer_topk(q, k, w, topk, ratio=1, path="stream", return_scores=True,
                                  workspace_bytes=4 * 2 * 16 * 40)
    check_format(idx, scores, topk)
    oi, ov = oracle_topk(q, k, w, topk, ratio=1)
    assert torch.equal(idx.long(), oi) and torch.equal(scores.double(), ov)
    assert {kind for kind, _ in routes.kinds} == branches
    assert routes.trimmed > 0, "no row was trimmed to its top k"


@pytest.mark.parametrize("ratio", [1, 3])
def test_stream_whole_row_ties_overflow_into_the_radix_select(ratio, monkeypatch):
    # All-zero scores: every entry of every row ties; the candidates overflow and those rows are
    # selected by the radix select (smallest indices first).
    import streamindex.paths.stream as stream_mod
    monkeypatch.setattr(stream_mod, "DIRECT_MAX_COLS", 0)
    routes = _Routes(monkeypatch)
    q, k, w = zero_case(260, ratio=ratio)
    idx = si.indexer_topk(q, k, w, 2, ratio=ratio, path="stream", workspace_bytes=4 * 16 * 260)
    oi, _ = oracle_topk(q, k, w, 2, ratio=ratio)
    assert torch.equal(idx.long(), oi)
    assert routes.overflowed(), "no row overflowed its candidates"


def test_stream_eight_distinct_keys_tie_at_the_boundary(monkeypatch):
    # Keys from 8 distinct rows (the `ties8` input kind): each query sees at most 8 distinct scores.
    routes = _Routes(monkeypatch)
    q, k, w = si.make_inputs(300, 2, 16, B=2, ratio=1, dtype=torch.float32, seed=4, kind="ties8")
    idx = si.indexer_topk(q, k, w, 3, ratio=1, path="stream", workspace_bytes=4 * 2 * 16 * 300)
    oi, _ = oracle_topk(q, k, w, 3, ratio=1)
    assert torch.equal(idx.long(), oi)
    assert routes.overflowed()


@pytest.mark.parametrize("path", ["stream", "stream_fp8", "materialize", "partition_merge"])
def test_topk_2048_exact_and_2049_refused_or_exact(path):
    # Rows see 1,990 .. 2,100 keys: fewer than topk, exactly topk and more, on every path.
    S, T, offset = 6, 2100, 1990
    q, k, w = random_case(S, H=1, D=16, B=1, T=T, ratio=1, seed=8)
    if path == "stream_fp8":
        q, k, qs, ks = quantize_fp8(q, k)
        kw = dict(q_scale=qs, k_scale=ks)
    else:
        kw = {}
    idx = si.indexer_topk(q, k, w, 2048, ratio=1, offset=offset, path=path, **kw)
    oi, _ = oracle_topk(q, k, w, 2048, ratio=1, offset=offset, **kw)
    assert torch.equal(idx.long(), oi)
    if path.startswith("stream"):
        with pytest.raises(ValueError, match="topk must be <= 2048"):
            si.indexer_topk(q, k, w, 2049, ratio=1, offset=offset, path=path, **kw)
    else:
        assert (si.indexer_topk(q, k, w, 2049, ratio=1, offset=offset, path=path)[..., 2048] >= -1).all()


@pytest.mark.parametrize("path,fp8", [("stream", False), ("stream_fp8", True)])
def test_precompile_covers_every_kernel_variant_a_call_meets(path, fp8, monkeypatch):
    # The variants of stream's kernels are the constexprs: the score kernel's column group, the
    # register width of the k-th group maximum, the gather's group and the selection's capacity
    # (the radix select has one).
    # Whatever precompile launches must include whatever a real call then launches.
    import streamindex.paths.stream as stream_mod
    from streamindex.kernels.candidates import kth_register_width
    seen = []
    for name, key in (("score_tile", lambda a, kw: kw.get("group", 0)),
                      ("kth_group_max", lambda a, kw: kth_register_width(a[0].shape[1])),
                      ("gather_candidates", lambda a, kw: a[2]),
                      ("radix_select", lambda a, kw: 0),
                      ("trim_candidates", lambda a, kw: a[0].shape[1]),
                      ("select_candidates", lambda a, kw: a[0].shape[1])):
        real = getattr(stream_mod, name)

        def rec(*a, _real=real, _name=name, _key=key, **kw):
            seen.append((_name, _key(a, kw)))
            return _real(*a, **kw)
        monkeypatch.setattr(stream_mod, name, rec)
    q, k, w = random_case(300, H=2, D=16, B=1, ratio=1, seed=12)
    kw = {}
    if fp8:
        q, k, qs, ks = quantize_fp8(q, k)
        kw = dict(q_scale=qs, k_scale=ks)
    si.precompile(q, k, w, 3, ratio=1, path=path, **kw)
    built = set(seen)
    seen.clear()
    before = si.indexer_topk(q, k, w, 3, ratio=1, path=path, **kw)
    assert set(seen) <= built, f"not precompiled: {set(seen) - built}"
    assert {n for n, _ in seen} == {"score_tile", "kth_group_max", "gather_candidates", "radix_select",
                                    "trim_candidates", "select_candidates"}
    si.precompile(q, k, w, 3, ratio=1, path=path, **kw)
    assert torch.equal(si.indexer_topk(q, k, w, 3, ratio=1, path=path, **kw), before)


def test_stream_launches_split_at_cuda_grid_limits(monkeypatch):
    # CUDA caps grid y and z at 65,535: row blocks and the batch beyond it go to further launches
    # (here the cap is 2, so 16-row blocks split every 32 rows and the batch of 3 in two launches).
    import streamindex.kernels.score_tile as st

    monkeypatch.setattr(st, "MAX_GRID_YZ", 2)
    launches = []
    cls = type(st.score_tile_kernel)
    real = cls.__getitem__

    def getitem(self, grid):
        if self is st.score_tile_kernel:
            launches.append(grid)
        return real(self, grid)
    monkeypatch.setattr(cls, "__getitem__", getitem)
    q, k, w = integer_case(100, B=3, ratio=1, seed=9)
    assert_exact("stream", q, k, w, topk=5, ratio=1)
    assert launches and max(g[1] for g in launches) <= 2 and max(g[2] for g in launches) <= 2


def test_stream_group_size_rule():
    # Powers of two, at most LARGEST_GROUP where the rows allow wider groups, leaving every row of
    # the chunk GROUPS_PER_K·topk groups; group 1 for short rows; widened past LARGEST_GROUP only to
    # keep the widest row within MAX_GROUPS.
    import streamindex.paths.stream as sm
    for topk in (1, 512, 1024, 2048):
        for n in (1, 100, 8192, 8193, 65536, 262144, 1 << 20):
            g = sm._group_size(n, n, topk, block_t=128)
            assert g & (g - 1) == 0 and g <= 128
            if g > 1:
                assert -(-n // g) <= sm.MAX_GROUPS or g == 128
            if g > sm.LARGEST_GROUP:
                assert -(-n // (g // 2)) > sm.MAX_GROUPS
            elif n // g >= sm.GROUPS_PER_K * topk and g >= sm.MIN_GROUP:
                assert n // (2 * g) < sm.GROUPS_PER_K * topk or 2 * g > sm.LARGEST_GROUP
    assert sm._group_size(262144, 262144, 512, block_t=128) == sm.LARGEST_GROUP
    assert sm._group_size(1500, 1500, 512, block_t=128) == 1


@pytest.mark.parametrize("largest", [2, 4])
def test_stream_exact_with_groups_capped(largest, monkeypatch):
    # Rows wide enough for groups of 16 take groups of at most `largest`: more groups per row than
    # GROUPS_PER_K·topk, the k-th search over them, and the gather of the live ones stay exact.
    import streamindex.paths.stream as stream_mod
    monkeypatch.setattr(stream_mod, "DIRECT_MAX_COLS", 0)
    monkeypatch.setattr(stream_mod, "LARGEST_GROUP", largest)
    q, k, w = integer_case(150, B=1, ratio=1, seed=largest)
    idx, scores = si.indexer_topk(q, k, w, 3, ratio=1, path="stream", return_scores=True,
                                  workspace_bytes=4 * 16 * 160)
    check_format(idx, scores, 3)
    oi, ov = oracle_topk(q, k, w, 3, ratio=1)
    assert torch.equal(idx.long(), oi) and torch.equal(scores.double(), ov)
