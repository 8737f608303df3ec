"""The candidate-selection kernels of ``stream`` one by one, against torch (CPU, interpreter)."""
import pytest
import torch

from streamindex.kernels import candidates
from streamindex.kernels.candidates import (Threshold, gather_candidates, kth_group_max, radix_select,
                                           select_candidates, trim_candidates)


def _rows_with_ties(R, N, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-6, 7, (R, N), generator=g).float() / 4   # many exact ties, +/-0.0 included
    x[0] = -0.0
    x[1, N // 2:] = float("-inf")                                 # a row that sees half its columns
    return x


@pytest.mark.parametrize("unroll", [True, False])   # the search unrolled or as a loop
@pytest.mark.parametrize("G,topk", [(37, 5), (64, 64), (100, 1), (130, 17), (20, 30), (3000, 700)])
def test_kth_group_max_bounds_the_kth_largest_and_lists_the_live_groups(G, topk, unroll, monkeypatch):
    monkeypatch.setattr(candidates, "UNROLL_SEARCH", unroll)
    gmax = _rows_with_ties(6, G, seed=G)
    gmax[2] = torch.randn(G, generator=torch.Generator().manual_seed(1)) * 1e-30   # denormal range
    gmax[4] = torch.randn(G, generator=torch.Generator().manual_seed(2)) * 100
    th = kth_group_max(gmax, topk, live_cap=G)
    # tau: the topk-th largest, or below it with exactly topk at or above (the search stopped);
    # fewer entries than topk: -inf
    kth = torch.topk(gmax, topk, dim=1).values[:, -1] if topk <= G else torch.full((6,), float("-inf"))
    at_or_above = (gmax >= th.tau[:, None]).sum(1)
    assert (th.tau <= kth).all()
    assert ((th.tau == kth) | (at_or_above == topk)).all()
    if topk <= G:
        assert (at_or_above >= topk).all()
        if 2 * topk <= G:
            assert (th.tau < kth).any(), "no row stopped early"
    else:
        assert (th.tau == float("-inf")).all()
    assert torch.equal(th.top, gmax.amax(1))
    assert torch.equal(th.count, torch.zeros(6, dtype=torch.int32))
    live = (gmax >= th.tau[:, None]) & (gmax > float("-inf"))
    assert torch.equal(th.n_live, live.sum(1).int())
    for r in range(6):
        assert th.live[r, :int(th.n_live[r])].tolist() == torch.nonzero(live[r]).flatten().tolist()


def _gather(ws, group, topk, cap, live_cap, block):
    """``(gmax, threshold, (vals, idx))`` of ``ws`` with ``group``-wide column groups."""
    R, N = ws.shape
    gmax = torch.nn.functional.pad(ws, (0, -N % group), value=float("-inf")).view(R, -1, group).amax(2)
    th = kth_group_max(gmax.contiguous(), topk, live_cap=live_cap)
    return gmax, th, gather_candidates(ws, th, group, cap, block=block)


@pytest.mark.parametrize("group,block", [(4, 32), (16, 32), (16, 16)])
def test_gather_reads_every_entry_at_or_above_tau(group, block):
    R, N, cap, topk = 5, 150, 64, 6
    ws = _rows_with_ties(R, N, seed=group)
    ws[3] = torch.arange(N).float()                               # few candidates, one group
    gmax, th, (vals, idx) = _gather(ws, group, topk, cap, live_cap=-(-N // group), block=block)
    col_group_max = gmax.repeat_interleave(group, dim=1)[:, :N]
    # Entries >= tau, in groups that are not all -inf (a row with fewer than topk groups: tau = -inf)
    want = (ws >= th.tau[:, None]) & (col_group_max > float("-inf"))
    if group == 16:
        assert th.tau[1] == float("-inf")                       # row 1 has 5 finite groups, topk 6
    assert torch.equal(th.count, want.sum(1).int())
    assert (th.count > cap).any() and (th.count <= cap).any()     # both kinds of row are exercised
    for r in range(R):
        n = min(int(th.count[r]), cap)
        got = sorted(idx[r, :n].tolist())
        if th.count[r] <= cap:
            assert got == torch.nonzero(want[r]).flatten().tolist()
        assert torch.equal(vals[r, :n], ws[r, idx[r, :n].long()])


def test_gather_reports_overflow_when_live_groups_exceed_their_slots():
    R, N, group, topk, cap = 3, 128, 4, 3, 64
    ws = torch.randn(R, N, generator=torch.Generator().manual_seed(0))
    ws[1] = 1.0                                                   # all 32 groups tie at the maximum
    _, th, _ = _gather(ws, group, topk, cap, live_cap=8, block=16)
    assert th.n_live.tolist() == [topk, 32, topk]
    assert th.count[1] > cap
    assert torch.equal(th.count[[0, 2]], (ws[[0, 2]] >= th.tau[[0, 2], None]).sum(1).int())


def _threshold(count, tau):
    """A :class:`Threshold` with these counts and taus (the fields the selection kernels read)."""
    R = count.shape[0]
    return Threshold(tau, tau.clone(), torch.zeros(R, 1, dtype=torch.int32), torch.zeros(R, dtype=torch.int32), count)


@pytest.mark.parametrize("unroll", [True, False])
@pytest.mark.parametrize("n_cand", [6, 7, 8, 9, 16, 20, 32])   # cap = 32: untrimmed, trimmed from cap/2, cap
def test_trim_then_select_orders_by_score_then_index(n_cand, unroll, monkeypatch):
    monkeypatch.setattr(candidates, "UNROLL_SEARCH", unroll)
    # Row 0: few distinct values (ties at the k-th value wider than the sort); row 1: distinct
    # values; row 2: ties just at the boundary; row 3: one value everywhere. topk = 6 <= cap/4 = 8.
    R, cap, topk, S = 4, 32, 6, 40
    g = torch.Generator().manual_seed(n_cand)
    vals = torch.randint(0, 4, (R, cap), generator=g).float()
    vals[1] = torch.randn(cap, generator=g)
    vals[2] = torch.randperm(cap, generator=g).float()
    vals[2, :n_cand:3] = vals[2, :n_cand].sort(descending=True).values[topk - 1]
    vals[3] = -0.0
    idx = torch.stack([torch.randperm(cap, generator=g) for _ in range(R)]).int()
    vals[:, n_cand:] = 99.0                                       # garbage beyond count: must be ignored
    count = torch.full((R,), n_cand, dtype=torch.int32)
    th = _threshold(count.clone(), vals[:, :n_cand].amin(1))
    want = [sorted(zip((vals[r, :n_cand] + 0.0).tolist(), idx[r, :n_cand].tolist()), key=lambda p: (-p[0], p[1]))[:topk]
            for r in range(R)]
    out_i = torch.full((1, S, topk), -7, dtype=torch.int32)
    out_v = torch.zeros(1, S, topk)
    geo = dict(row0=0, rows_per_b=R, s0=30, T=1000, ratio=1, offset=0)
    trim_candidates(vals, idx, th, topk=topk, **geo)
    assert th.count.tolist() == [n_cand if n_cand <= cap // 4 else topk] * R
    select_candidates(vals, idx, th.count, out_i, out_v, **geo)
    for r in range(R):
        assert out_i[0, 30 + r].tolist() == [i for _, i in want[r]]
        assert out_v[0, 30 + r].tolist() == [v for v, _ in want[r]]
    assert (out_i[0, :30] == -7).all() and (out_i[0, 34:] == -7).all()


@pytest.mark.parametrize("claim", ["none", "group_maxima"])
@pytest.mark.parametrize("N,topk", [(1, 1), (5, 5), (300, 7), (4500, 3), (2100, 64), (9000, 600)])
def test_radix_select_of_overflowing_rows_is_exact(N, topk, claim):
    # count > cap sends a row to the radix select over its scores: ties at the k-th value (integers
    # in [-6, 6], so thousands wide), +-0.0, denormals, rows that see fewer keys than topk, one key;
    # then the sort writes the ordered output. claim "none": tau = -inf (every radix pass runs);
    # "group_maxima": tau / top from the maxima of groups of 4 of the visible scores (rows whose
    # maximum is tied topk times skip the passes).
    R, cap = 5, 4 * 1024
    g = torch.Generator().manual_seed(N + topk)
    scores = torch.randint(-6, 7, (R, N), generator=g).float() / 4
    scores[0] = -0.0
    scores[2] = torch.randn(N, generator=g) * 1e-39                   # denormal range
    scores[3] = torch.randn(N, generator=g)                            # no ties
    s0, ratio = 3, 1                                                   # row i sees min(N, s0 + i + 1 + offset)
    offset = N - 6
    n_vis = [min(N, (offset + s0 + r + 1) // ratio) for r in range(R)]
    visible = scores.clone()
    for r in range(R):
        visible[r, n_vis[r]:] = float("-inf")
    if claim == "none":
        th = _threshold(torch.full((R,), cap + 1, dtype=torch.int32), torch.full((R,), float("-inf")))
    else:
        gmax = torch.nn.functional.pad(visible, (0, -N % 4), value=float("-inf")).view(R, -1, 4).amax(2)
        th = kth_group_max(gmax.contiguous(), topk)
        th.count.fill_(cap + 1)
    vals = torch.full((R, cap), 7.0)
    idx = torch.zeros((R, cap), dtype=torch.int32)
    out_i = torch.full((1, s0 + R, topk), -7, dtype=torch.int32)
    out_v = torch.zeros(1, s0 + R, topk)
    geo = dict(row0=0, rows_per_b=R, s0=s0, T=N, ratio=ratio, offset=offset)
    th.count[1] = 3                                                    # a row that fits: left alone
    radix_select(scores, th, vals, idx, topk=topk, **geo)
    assert th.count[1] == 3 and (vals[1] == 7.0).all()
    th.count[1] = cap + 1
    radix_select(scores, th, vals, idx, topk=topk, **geo)
    assert th.count.tolist() == [min(topk, n) for n in n_vis]
    if claim == "group_maxima" and N >= 2100:
        assert (th.tau == th.top).any(), "no row took the tied-maximum shortcut"
    select_candidates(vals, idx, th.count, out_i, out_v, **geo)
    for r in range(R):
        pairs = sorted(((scores[r, j].item() + 0.0, j) for j in range(n_vis[r])), key=lambda p: (-p[0], p[1]))[:topk]
        want_i = [j for _, j in pairs] + [-1] * (topk - len(pairs))
        assert out_i[0, s0 + r].tolist() == want_i, r
        assert out_v[0, s0 + r, :len(pairs)].tolist() == [v for v, _ in pairs]
