"""CPU tests of ``streamindex.distributed`` and the distributed harness cell: the sharding (pure
python), validation on a one-rank gloo group, and 2 and 3 spawned ranks on gloo (Triton under the
interpreter) against the single-process calls, bit for bit; then the cell module end to end
under ``torch.distributed.run`` (torchrun)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import streamindex as si
from streamindex.distributed import (csa_forward_distributed, csa_row_cost, gather_rows, indexer_topk_distributed,
                                     keep_multicast_off, local_rows, shard_bounds, shard_cost)
from streamindex.distributed.sharding import check_shards

REPO = Path(__file__).resolve().parents[1]
INTERP = os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------- sharding (pure python)

def _visible(s, ratio, offset, T):
    return max(0, min(T, (offset + s + 1) // ratio))


@pytest.mark.parametrize("scheme", ["contiguous", "zigzag"])
@pytest.mark.parametrize("S,W,ratio,offset,T,row_cost", [
    (1000, 2, 4, 0, 250, 0), (1000, 3, 4, 0, 250, 0), (997, 4, 4, 13, 252, 0), (500, 3, 1, 0, 500, 2.5),
    (300, 2, 4, 1000, 60, 0),     # every row sees all T keys: equal rows
    (7, 3, 4, 0, 1, 0), (3, 4, 4, 0, 1, 0),   # fewer rows than chunks: some ranks get none
    (4096, 5, 2, 7, 1000, 17),    # the T cap reached halfway
])
def test_shard_bounds_cover_and_balance(scheme, S, W, ratio, offset, T, row_cost):
    shards = shard_bounds(S, W, ratio=ratio, offset=offset, T=T, scheme=scheme, row_cost=row_cost)
    assert len(shards) == W
    check_shards(shards, S)  # ascending, non-empty, cover [0, S) once
    rows = [s for r in shards for s0, s1 in r for s in range(s0, s1)]
    assert sorted(rows) == list(range(S))
    costs = [shard_cost(r, ratio=ratio, offset=offset, T=T, row_cost=row_cost) for r in shards]
    brute = [sum(_visible(s, ratio, offset, T) + Fraction(row_cost) for s0, s1 in r for s in range(s0, s1))
             for r in shards]
    assert costs == brute
    total = sum(costs)
    if total:
        # each cut is the row nearest its target: a rank is off by at most one row's cost per cut
        row_max = max(_visible(s, ratio, offset, T) for s in range(S)) + Fraction(row_cost)
        cuts = 2 if scheme == "contiguous" else 4
        assert all(abs(c - total / W) <= cuts * row_max for c in costs), (costs, total / W)
    if scheme == "contiguous":
        assert all(len(r) <= 1 for r in shards)
    else:
        assert all(len(r) <= 2 for r in shards)


def test_shard_bounds_known_splits():
    # causal cost ~ s: contiguous cuts at S/sqrt(2); zigzag gives equal rows (the cost is affine)
    c = shard_bounds(1 << 20, 2, ratio=4, T=1 << 18)
    assert c[0] == [(0, 741455)] and c[1] == [(741455, 1 << 20)]
    z = shard_bounds(1 << 20, 2, ratio=4, T=1 << 18, scheme="zigzag")
    assert z == [[(0, 262144), (786432, 1 << 20)], [(262144, 786432)]]
    z3 = shard_bounds(3 * 2 ** 16, 3, ratio=1, T=3 * 2 ** 16, scheme="zigzag")
    assert [sum(b - a for a, b in r) for r in z3] == [2 ** 16] * 3
    assert shard_bounds(10, 1, ratio=4, T=2, scheme="zigzag") == [[(0, 10)]]  # one rank: one range
    # a row cost moves the contiguous cut towards equal rows
    assert shard_bounds(1000, 2, ratio=1, T=1000, row_cost=10 ** 9)[0] == [(0, 500)]


def test_shard_bounds_and_bounds_validation():
    with pytest.raises(ValueError, match="scheme"):
        shard_bounds(10, 2, ratio=4, T=2, scheme="ring")
    with pytest.raises(ValueError, match="world_size"):
        shard_bounds(10, 0, ratio=4, T=2)
    with pytest.raises(TypeError, match="S must be an int"):
        shard_bounds(10.0, 2, ratio=4, T=2)
    with pytest.raises(ValueError, match="row_cost"):
        shard_bounds(10, 2, ratio=4, T=2, row_cost=-1)
    with pytest.raises(ValueError, match="covered twice"):
        check_shards([[(0, 6)], [(5, 10)]], 10)
    with pytest.raises(ValueError, match="missing"):
        check_shards([[(0, 4)], [(5, 10)]], 10)
    with pytest.raises(ValueError, match="ascending"):
        check_shards([[(6, 10), (0, 3)], [(3, 6)]], 10)


def test_local_rows_and_multicast_env():
    x = torch.arange(2 * 10).view(2, 10)
    assert torch.equal(local_rows(x, [(0, 2), (7, 10)]), x[:, [0, 1, 7, 8, 9]])
    assert local_rows(x, [(3, 5)]).data_ptr() == x[:, 3:5].data_ptr()  # one range: a view
    assert local_rows(x[0], [(1, 3)], dim=0).tolist() == [1, 2]
    env = {"NCCL_NVLS_ENABLE": "0"}
    keep_multicast_off(env)
    assert env == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
    assert csa_row_cost(H=64, Di=128, Hq=64, D=512, topk=512, window=128) == 5120


# ----------------------------------------------------------------------------- one rank, in process

@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_rank_matches_indexer_topk_and_validates(one_rank_group):
    q, k, w = si.make_inputs(29, 3, 8, B=2, T=9, ratio=2, dtype=torch.float32, seed=3)
    ref = si.indexer_topk(q, k, w, 5, ratio=2, offset=4, path="materialize")
    for scheme in ("contiguous", "zigzag"):
        got = indexer_topk_distributed(q, k, w, 5, ratio=2, offset=4, scheme=scheme, path="materialize",
                                       gather="all")
        assert torch.equal(got, ref)
    with pytest.raises(ValueError, match="q_local has 28 query rows but rank 0's shard"):
        indexer_topk_distributed(q[:, 1:], k, w[:, 1:], 5, ratio=2, S=29, path="materialize")
    with pytest.raises(ValueError, match="w_local must have q_local's 29 rows"):
        indexer_topk_distributed(q, k, w[:, 1:], 5, ratio=2, path="materialize")
    with pytest.raises(ValueError, match="bounds must hold one list of ranges per rank of the group \\(1\\)"):
        indexer_topk_distributed(q, k, w, 5, ratio=2, bounds=[[(0, 10)], [(10, 29)]], path="materialize")
    with pytest.raises(ValueError, match="S=30 does not match bounds"):
        indexer_topk_distributed(q, k, w, 5, ratio=2, S=30, bounds=[[(0, 29)]], path="materialize")
    with pytest.raises(ValueError, match="gather must be one of"):
        indexer_topk_distributed(q, k, w, 5, ratio=2, gather="rank1")
    with pytest.raises(ValueError, match="k is on meta but q_local is on cpu"):
        indexer_topk_distributed(q, k.to("meta"), w, 5, ratio=2)
    with pytest.raises(TypeError, match="q_local must be a torch.Tensor"):
        indexer_topk_distributed(q.numpy(), k, w, 5, ratio=2)
    with pytest.raises(ValueError, match="topk must be >= 1"):
        indexer_topk_distributed(q, k, w, 0, ratio=2)
    with pytest.raises(ValueError, match="dst must be a rank of the group"):
        gather_rows(ref, [[(0, 29)]], S=29, dst=1)


def test_needs_an_initialised_group():
    q, k, w = si.make_inputs(8, 2, 8, T=2, dtype=torch.float32)
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        indexer_topk_distributed(q, k, w, 2, ratio=4, path="materialize")


# ----------------------------------------------------------------------------- 2 and 3 ranks (spawned)

def _uneven(W):
    return {2: [[(0, 3)], [(3, 37)]], 3: [[(30, 37)], [(0, 2), (20, 30)], [(2, 20)]]}[W]


def indexer_cases(W: int) -> dict:
    """Name → case; every rank and the parent build the same inputs from it."""
    base = dict(B=2, S=37, H=3, D=8, T=20, ratio=2, offset=5, topk=6, fp8=False, unbatched=False)
    cases = {
        "contiguous_B2_offset_scores_gather_all": dict(base, path="materialize", scheme="contiguous", gather="all",
                                                       scores=True, pass_S=True),
        "zigzag_rank0_S_allgathered": dict(base, path="partition_merge", scheme="zigzag", gather="rank0",
                                           pass_S=False),
        "explicit_uneven_unbatched": dict(base, B=1, unbatched=True, path="chunked_torch", bounds=_uneven(W),
                                          gather="all", pass_S=False),
        "ratio1_row_cost": dict(base, ratio=1, offset=0, T=37, path="materialize_fused", scheme="contiguous",
                                row_cost=2.5, pass_S=True),
        "rank_without_rows": dict(base, S=3, T=1, ratio=4, offset=0, path="materialize", scheme="zigzag",
                                  gather="all", pass_S=True),
        "fp8_zigzag": dict(base, fp8=True, path="materialize", scheme="zigzag", gather="all", pass_S=True),
    }
    if INTERP:
        cases["stream_zigzag"] = dict(B=1, S=24, H=2, D=16, T=8, ratio=4, offset=3, topk=4, fp8=False, unbatched=False,
                                      path="stream", scheme="zigzag", gather="all", pass_S=True)
    return cases


def case_inputs(c):
    if c["fp8"]:
        q, k, w, qs, ks = si.make_fp8_inputs(c["S"], c["H"], c["D"], B=c["B"], T=c["T"], ratio=c["ratio"], seed=7)
    else:
        q, k, w = si.make_inputs(c["S"], c["H"], c["D"], B=c["B"], T=c["T"], ratio=c["ratio"], dtype=torch.float32,
                                 seed=7)
        qs = ks = None
    return q, k, w, qs, ks


def case_shards(c, W):
    return c.get("bounds") or shard_bounds(c["S"], W, ratio=c["ratio"], offset=c["offset"], T=c["T"],
                                           scheme=c["scheme"], row_cost=c.get("row_cost", 0))


def run_indexer_case(c, rank, W):
    q, k, w, qs, ks = case_inputs(c)
    mine = case_shards(c, W)[rank]
    ql, wl = local_rows(q, mine), local_rows(w, mine)
    qsl = None if qs is None else local_rows(qs, mine)
    if c["unbatched"]:
        ql, k, wl = ql[0], k[0], wl[0]
    out = indexer_topk_distributed(
        ql, k, wl, c["topk"], ratio=c["ratio"], offset=c["offset"], S=c["S"] if c["pass_S"] else None,
        scheme=c.get("scheme", "contiguous"), row_cost=c.get("row_cost", 0), bounds=c.get("bounds"),
        gather=c.get("gather"), q_scale=qsl, k_scale=ks, return_scores=c.get("scores", False), path=c["path"])
    return out


def csa_case_inputs(seed=0, B=2, S=37, H=3, Di=8, Hq=4, D=32, ratio=4, offset=6):
    g = torch.Generator().manual_seed(seed)
    T = (offset + S) // ratio
    return dict(
        xq=torch.randn(B, S, H, Di, generator=g), ik=torch.randn(B, T, Di, generator=g),
        iw=torch.randn(B, S, H, generator=g), q=torch.randn(B, S, Hq, D, generator=g).bfloat16(),
        kvc=torch.randn(B, T, D, generator=g).bfloat16(), kvw=torch.randn(B, offset + S, D, generator=g).bfloat16(),
        sink=torch.randn(Hq, generator=g), S=S, ratio=ratio, offset=offset)


CSA_KW = dict(topk=5, window=8, indexer_path="materialize")


def csa_cases() -> dict:
    cases = {"reference_contiguous_provider_consumer": dict(attn_impl="reference", scheme="contiguous", mode="stream"),
             "reference_zigzag_provider_gather_rank0": dict(attn_impl="reference", scheme="zigzag", mode="provider",
                                                            gather="rank0")}
    if INTERP:
        cases["triton_zigzag_tensor_gather_all"] = dict(attn_impl="triton", scheme="zigzag", mode="tensor",
                                                        gather="all")
    return cases


def run_csa_case(c, rank, W):
    d = csa_case_inputs()
    S, ratio, offset = d["S"], d["ratio"], d["offset"]
    mine = shard_bounds(S, W, ratio=ratio, offset=offset, T=d["kvc"].shape[1], scheme=c["scheme"])[rank]
    xq, iw, q = (local_rows(d[n], mine) for n in ("xq", "iw", "q"))
    kw = dict(CSA_KW, ratio=ratio, offset=offset, S=S, scheme=c["scheme"], attn_impl=c["attn_impl"], chunk=4,
              index_chunk=8, gather=c.get("gather"))
    if c["mode"] == "tensor":
        return csa_forward_distributed(xq, d["ik"], iw, q, d["kvc"], d["kvw"], d["sink"], **kw)
    if c["mode"] == "provider":
        return csa_forward_distributed(xq, d["ik"], iw, lambda a, b: q[:, a:b], d["kvc"], d["kvw"], d["sink"], **kw)
    got = torch.full_like(q, float("nan"))
    calls = []

    def consume(a, b, o):
        calls.append((a, b))
        got[:, a:b] = o
    tm = {}
    assert csa_forward_distributed(xq, d["ik"], iw, lambda a, b: q[:, a:b], d["kvc"], d["kvw"], d["sink"],
                                   out=consume, timings=tm, **kw) is None
    assert calls and calls[0][0] == 0 and calls[-1][1] == q.shape[1] and tm["n_calls"] == len(mine)
    return got


def _pythonpath() -> str:
    """The repository first, then whatever the environment had (the device bundle's paths)."""
    return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, W, ports, out_dir, cell_payloads):
    os.environ["TRITON_INTERPRET"] = os.environ.get("TRITON_INTERPRET", "1")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank), WORLD_SIZE=str(W),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=W)
    res = {"indexer": {n: run_indexer_case(c, rank, W) for n, c in indexer_cases(W).items()},
           "csa": {n: run_csa_case(c, rank, W) for n, c in csa_cases().items()}}
    # keys sharded by a context-parallel compressor, assembled into a preallocated buffer
    k = case_inputs(indexer_cases(W)["contiguous_B2_offset_scores_gather_all"])[1]
    key_shards = [[(t0, t1)] for t0, t1 in
                  ((k.shape[1] * r // W, k.shape[1] * (r + 1) // W) for r in range(W))]
    buf = torch.full_like(k, float("nan"))
    got = gather_rows(local_rows(k, key_shards[rank]).clone(), key_shards, S=k.shape[1], dst=None, out=buf)
    res["keys_gathered"] = got is buf and torch.equal(buf, k)
    q, k, w = case_inputs(indexer_cases(W)["ratio1_row_cost"])[:3]  # all 37 rows on every rank
    for name, bad in (("rows", lambda: indexer_topk_distributed(q, k, w, 4, ratio=1, S=37, path="materialize")),
                      ("bounds", lambda: indexer_topk_distributed(q, k, w, 4, ratio=1, bounds=[[(0, 37)]],
                                                                   path="materialize"))):
        try:
            bad()
            res[f"error_{name}"] = None
        except ValueError as exc:
            res[f"error_{name}"] = str(exc)
    dist.barrier()
    dist.destroy_process_group()
    rows = []
    if cell_payloads:
        from streamindex.harness.distributed_cell import run_distributed_cell

        # Each cell joins its own process group at its own rendezvous port, as each torchrun cell
        # does: a rank that finished the previous cell first must not reach that cell's store.
        for p, port in zip(cell_payloads, ports[1:]):
            os.environ["MASTER_PORT"] = str(port)
            rows.append(run_distributed_cell(p))
    torch.save({"lib": res, "rows": rows}, Path(out_dir) / f"rank{rank}.pt")


def cell_payload(**over) -> dict:
    """A tiny CPU cell, as ``CellSpec.to_dict()`` plus ``matmul``."""
    p = dict(experiment="scale_out_smoke", block="test", kind="indexer", hardware="cpu_smoke", device="cpu",
             path="materialize", model="tiny", B=1, S=64, H=4, D=16, topk=8, ratio=4, offset=0, dtype="fp32", seed=0,
             chunk_q=None, chunk_t=None, workspace_bytes=None, attn_impl=None,
             model_dims=dict(name="tiny", H=4, D=16, topk=8, ratio=4, attn_heads=4, head_dim=64, rope_dim=16, window=8),
             measure_time=True, measure_memory=True, measure_recall=True, measure_overlap=False, recall_rows=16,
             tol_factor=1e-5, warmup=1, repeats=2, time_budget_s=2.0, fast_call_s=0.0, bench_ms=50,
             proxy_warmup_above_S=None, proxy_warmup_S=64, cell_timeout_s=120, skip_predicted_call_s=None,
             triton_interpret=True, fail_inject=None, command="test", matmul=[0.5, "fp32 cpu 512^3"])
    p.update(over)
    return p


CSA_CELL = dict(kind="csa", path="csa", attn_impl="reference",
                model_dims=dict(name="tiny", H=4, D=16, topk=8, ratio=4, attn_heads=4, head_dim=64, rope_dim=16,
                                window=8, indexer_path="materialize", chunk=16, index_chunk=32))


def _spawn(W, tmp_path, cell_payloads=()):
    ports = [_free_port() for _ in range(1 + len(cell_payloads))]
    mp.start_processes(_worker, args=(W, ports, str(tmp_path), list(cell_payloads)), nprocs=W, join=True,
                       start_method="spawn")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(W)]


def _expected_indexer(c, W):
    q, k, w, qs, ks = case_inputs(c)
    ref = si.indexer_topk(q, k, w, c["topk"], ratio=c["ratio"], offset=c["offset"], path=c["path"], q_scale=qs,
                          k_scale=ks, return_scores=True)
    ref = ref if c.get("scores") else ref[:1]
    shards = case_shards(c, W)
    return ref, shards


def _check_indexer(results, W):
    for name, c in indexer_cases(W).items():
        ref, shards = _expected_indexer(c, W)
        for rank in range(W):
            got = results[rank]["lib"]["indexer"][name]
            got = list(got) if isinstance(got, tuple) else [got]
            assert len(got) == len(ref), name
            for g, r in zip(got, ref):
                gather = c.get("gather")
                if gather == "rank0" and rank != 0:
                    assert g is None, name
                    continue
                want = r if gather else local_rows(r, shards[rank])
                if c["unbatched"]:
                    want = want[0]
                assert g.dtype == want.dtype and g.shape == want.shape, (name, rank)
                assert torch.equal(g, want), (name, rank)


def _check_csa(results, W):
    from streamindex.csa import csa_forward

    d = csa_case_inputs()
    for name, c in csa_cases().items():
        ref = csa_forward(d["xq"], d["ik"], d["iw"], d["q"], d["kvc"], d["kvw"], d["sink"], ratio=d["ratio"],
                          offset=d["offset"], attn_impl=c["attn_impl"], **CSA_KW)
        shards = shard_bounds(d["S"], W, ratio=d["ratio"], offset=d["offset"], T=d["kvc"].shape[1], scheme=c["scheme"])
        for rank in range(W):
            got = results[rank]["lib"]["csa"][name]
            if c.get("gather") == "rank0" and rank != 0:
                assert got is None
                continue
            want = ref if c.get("gather") else local_rows(ref, shards[rank])
            assert got.shape == want.shape, (name, rank)
            if c["attn_impl"] == "triton":
                assert torch.equal(got, want), (name, rank)
            else:
                torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("W", [2, 3])
def test_ranks_match_single_process(W, tmp_path):
    payloads = [cell_payload(S=40),
                cell_payload(**CSA_CELL), cell_payload(fail_inject="oom")] if W == 2 else []
    results = _spawn(W, tmp_path, payloads)
    _check_indexer(results, W)
    _check_csa(results, W)
    for r in range(W):
        assert results[r]["lib"]["keys_gathered"]
        assert "query rows but rank" in results[r]["lib"]["error_rows"]
        assert f"bounds must hold one list of ranges per rank of the group ({W})" in results[r]["lib"]["error_bounds"]
    if W == 2:
        rows = [row for row, code in results[0]["rows"]]
        assert [row for row, _ in results[1]["rows"]] == [None] * 3  # only rank 0 reports
        assert all(code == 0 for res in results for _, code in res["rows"])
        ok, csa, oom = rows
        _check_row_keys(ok, 40)
        assert ok["status"] == "ok" and ok["recall_min"] == 1.0 and ok["world_size"] == 2 and ok["n_gpus"] == 0
        assert csa["status"] == "ok", csa["reason"]
        assert csa["time_s"] > 0 and csa["time_indexer_s"] > 0 and csa["time_attn_s"] > 0
        assert "zigzag shards" in csa["note"]
        assert oom["status"] == "oom" and oom["reason"].startswith("rank 1: OutOfMemoryError")


def _check_row_keys(row, S, repeats=2):
    from streamindex.harness import schema

    assert set(schema.METRIC_COLUMNS) <= set(row), set(schema.METRIC_COLUMNS) - set(row)
    assert row["time_s"] > 0 and row["n_repeats"] == repeats and row["tokens_per_s"] > 0
    assert "slowest of 2 ranks" in row["timing_method"]
    assert row["frac_peak"] == pytest.approx(row["tflops"] / 0.5)
    assert row["useful_flops"] == 2 * 4 * 16 * sum(min(S // 4, (s + 1) // 4) for s in range(S))


# ----------------------------------------------------------------------------- the cell under torchrun

def _torchrun(payload, tmp_path, timeout=120):
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps(payload))
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=_pythonpath(), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "streamindex.harness.distributed_cell", str(spec), str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_cell_under_torchrun(tmp_path):
    """The default path (``stream``, under the interpreter) in the launcher the harness uses."""
    path = "stream" if INTERP else "materialize"
    proc, row = _torchrun(cell_payload(path=path, S=24, repeats=1, recall_rows=6), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_row_keys(row, 24, repeats=1)
    assert row["status"] == "ok" and row["recall_mean"] == 1.0 and row["world_size"] == 2
    assert row["gpu_name"] == "cpu" and "zigzag shards [(0, 6), (18, 24)] [(6, 18)]" in row["note"]


def test_cell_peer_that_hangs_becomes_an_error_row(tmp_path):
    proc, row = _torchrun(cell_payload(fail_inject="hang", collective_timeout_s=3), tmp_path)
    assert proc.returncode != 0  # rank 0 exits 3 after writing the row; torchrun stops the hanging rank
    assert row["status"] == "error" and "did not answer within 3 s" in row["reason"]


# ----------------------------------------------------------------------------- the cell's inputs

@pytest.mark.parametrize("fp8", [False, True])
def test_cell_draws_each_rank_s_rows_of_the_same_problem(fp8, monkeypatch):
    from streamindex.harness import cell_worker, distributed_cell
    from streamindex.harness.distributed_cell import draw_local_inputs, spec_from_payload

    monkeypatch.setattr(distributed_cell, "SLICE_S", 16)  # slices of 16 rows: S = 70 is 5 slices
    spec = spec_from_payload(cell_payload(S=70, B=2, dtype="bf16"))
    whole = draw_local_inputs(spec, [(0, 70)], fp8)
    for ranges in ([(0, 5), (40, 70)], [(5, 40)], [(33, 34)]):
        part = draw_local_inputs(spec, ranges, fp8)
        for name, a, b in zip(("q", "k", "w", "q_scale", "k_scale"), whole, part):
            if a is None:
                assert b is None
                continue
            want = local_rows(a, ranges) if name in ("q", "w", "q_scale") else a
            assert want.dtype == b.dtype and want.shape == b.shape
            assert torch.equal(want.float(), b.float()), (name, ranges)
    # Problems of at most SLICE_S rows: exactly the single-GPU cell's draw (build_inputs).
    monkeypatch.setattr(distributed_cell, "SLICE_S", 1 << 16)
    q, k, w, qs, ks, _, _ = cell_worker.build_inputs(spec, 70, fp8)
    got = draw_local_inputs(spec, [(3, 9), (50, 70)], fp8)
    assert torch.equal(got[0].float(), local_rows(q, [(3, 9), (50, 70)]).float()) and torch.equal(got[1].float(), k.float())
