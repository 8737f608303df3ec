"""``streamindex.distributed`` on GPUs (``pytest -m gpu``), V4-Flash dims, bf16 / fp8:

* one GPU, world_size 1 under NCCL: bit-identical to ``indexer_topk`` at 32K (one range and two);
* two GPUs (skipped with fewer): 2 NCCL ranks bit-identical to the single-GPU call at 262,144
  (contiguous and zigzag, gathered on rank 0 and on all, fp8, an offset), the CSA step likewise;
  the device guard (tensors on ``cuda:1`` while the current device is ``cuda:0``: right answer,
  no kernel and no allocation on ``cuda:0``); the harness cell under torchrun on both GPUs.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import streamindex as si
from streamindex.distributed import (csa_forward_distributed, indexer_topk_distributed, keep_multicast_off, local_rows,
                                     shard_bounds)
from streamindex.quant import quantize_fp8

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
two_gpus = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                              reason="needs two CUDA GPUs (nvidia-h200-x2)")

REPO = Path(__file__).resolve().parents[1]
H, D, TOPK, RATIO = 64, 128, 512, 4


def _pythonpath() -> str:
    """The repository first, then whatever the environment had (the device bundle's paths)."""
    return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nccl_one_rank(tmp_path):
    keep_multicast_off()
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1,
                            device_id=torch.device("cuda", 0))
    yield
    dist.destroy_process_group()
    torch.cuda.empty_cache()


def test_world_size_one_nccl_is_bit_identical(nccl_one_rank):
    S = 32768
    q, k, w = si.make_inputs(S, H, D, ratio=RATIO, device="cuda", seed=5)
    ref = si.indexer_topk(q, k, w, TOPK, ratio=RATIO)
    for scheme in ("contiguous", "zigzag"):
        assert torch.equal(indexer_topk_distributed(q, k, w, TOPK, ratio=RATIO, scheme=scheme), ref)
    two = [[(0, 10000), (10000, S)]]  # one rank, two ranges: two calls into one output
    got, sc = indexer_topk_distributed(q, k, w, TOPK, ratio=RATIO, bounds=two, gather="all", return_scores=True)
    ref_i, ref_s = si.indexer_topk(q, k, w, TOPK, ratio=RATIO, return_scores=True)
    assert torch.equal(got, ref_i) and torch.equal(sc, ref_s)


def _two_rank_worker(rank, port, out_dir):
    keep_multicast_off()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    dist.init_process_group("nccl", rank=rank, world_size=2, device_id=dev)
    res = {}
    S = 262144
    q, k, w = si.make_inputs(S, H, D, ratio=RATIO, device=dev, seed=11)
    ref = si.indexer_topk(q, k, w, TOPK, ratio=RATIO)
    for scheme in ("contiguous", "zigzag"):
        mine = shard_bounds(S, 2, ratio=RATIO, T=k.shape[1], scheme=scheme)[rank]
        loc = indexer_topk_distributed(local_rows(q, mine), k, local_rows(w, mine), TOPK, ratio=RATIO, S=S,
                                       scheme=scheme)
        res[f"{scheme} local"] = torch.equal(loc, local_rows(ref, mine))
        full = indexer_topk_distributed(local_rows(q, mine), k, local_rows(w, mine), TOPK, ratio=RATIO,
                                        scheme=scheme, gather="all")  # S all-gathered
        res[f"{scheme} gather all"] = torch.equal(full, ref)
        r0 = indexer_topk_distributed(local_rows(q, mine), k, local_rows(w, mine), TOPK, ratio=RATIO, S=S,
                                      scheme=scheme, gather="rank0")
        res[f"{scheme} gather rank0"] = torch.equal(r0, ref) if rank == 0 else r0 is None
    del ref
    q8, k8, qs, ks = quantize_fp8(q, k)
    del q
    ref8 = si.indexer_topk(q8, k8, w, TOPK, ratio=RATIO, path="stream_fp8", q_scale=qs, k_scale=ks)
    mine = shard_bounds(S, 2, ratio=RATIO, T=k8.shape[1], scheme="zigzag")[rank]
    got8 = indexer_topk_distributed(local_rows(q8, mine), k8, local_rows(w, mine), TOPK, ratio=RATIO, S=S,
                                    scheme="zigzag", path="stream_fp8", q_scale=local_rows(qs, mine), k_scale=ks,
                                    gather="all")
    res["fp8 zigzag gather all"] = torch.equal(got8, ref8)
    del q8, k8, w, qs, ks, ref8, got8

    # an offset (chunked prefill continuing a prefix), keys of the whole prefix
    S2, off = 65536, 40000
    q, k, w = si.make_inputs(S2, H, D, T=(off + S2) // RATIO, ratio=RATIO, device=dev, seed=12)
    ref = si.indexer_topk(q, k, w, TOPK, ratio=RATIO, offset=off)
    mine = shard_bounds(S2, 2, ratio=RATIO, offset=off, T=k.shape[1], scheme="zigzag")[rank]
    got = indexer_topk_distributed(local_rows(q, mine), k, local_rows(w, mine), TOPK, ratio=RATIO, offset=off,
                                   S=S2, scheme="zigzag", gather="all")
    res["offset zigzag gather all"] = torch.equal(got, ref)

    # the CSA step (TileLang attention when available, else Triton): one program per query
    Hq, Dv = 64, 512
    g = torch.Generator(device=dev).manual_seed(3)
    T2 = k.shape[1]
    kvc = torch.randn(1, T2, Dv, device=dev, generator=g).bfloat16()
    kvw = torch.randn(1, off + S2, Dv, device=dev, generator=g).bfloat16()
    sink = torch.randn(Hq, device=dev, generator=g)
    qm = torch.randn(1, S2, Hq, Dv, device=dev, generator=g).bfloat16()
    ref = si.csa_forward(q, k, w, qm, kvc, kvw, sink, topk=TOPK, ratio=RATIO, offset=off)
    got = csa_forward_distributed(local_rows(q, mine), k, local_rows(w, mine), local_rows(qm, mine), kvc, kvw, sink,
                                  topk=TOPK, ratio=RATIO, offset=off, S=S2, gather="all")
    res["csa zigzag gather all"] = torch.equal(got, ref)
    dist.barrier(device_ids=[rank])
    dist.destroy_process_group()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(res))


@two_gpus
def test_two_nccl_ranks_are_bit_identical(tmp_path):
    keep_multicast_off()
    mp.start_processes(_two_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    for rank in range(2):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert res and all(res.values()), (rank, res)


@two_gpus
def test_device_guard_on_cuda1_while_current_is_cuda0(tmp_path):
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.set_device(0)
    S = 32768
    q, k, w = si.make_inputs(S, H, D, ratio=RATIO, device="cuda:1", seed=9)
    ref = si.indexer_topk(q.to("cuda:0"), k.to("cuda:0"), w.to("cuda:0"), TOPK, ratio=RATIO).cpu()
    torch.cuda.synchronize(0)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with torch.cuda.device(1):  # compile for cuda:1 outside the profiled region
            si.precompile(q, k, w, TOPK, ratio=RATIO)
        torch.cuda.synchronize(1)
        alloc0 = torch.cuda.memory_allocated(0)
        torch.cuda.reset_peak_memory_stats(0)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            got = indexer_topk_distributed(q, k, w, TOPK, ratio=RATIO, bounds=[[(0, 5000), (5000, S)]], gather="all")
            torch.cuda.synchronize(1)
    finally:
        dist.destroy_process_group()
    assert torch.cuda.current_device() == 0
    assert got.device == torch.device("cuda", 1) and torch.equal(got.cpu(), ref)
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    assert kernels, "the profiler saw no kernel"
    assert {e.device_index for e in kernels} == {1}, sorted({(e.name, e.device_index) for e in kernels
                                                            if e.device_index != 1})[:10]
    assert torch.cuda.memory_allocated(0) == alloc0 and torch.cuda.max_memory_allocated(0) == alloc0


@two_gpus
def test_cell_on_two_gpus_under_torchrun(tmp_path):
    from tests.test_distributed import cell_payload

    payload = cell_payload(hardware="h200x2", device="cuda", path="stream", model="v4_flash", S=262144, H=H, D=D,
                           topk=TOPK, ratio=RATIO, dtype="bf16", recall_rows=32, triton_interpret=False,
                           model_dims=dict(name="v4_flash", H=H, D=D, topk=TOPK, ratio=RATIO, attn_heads=64,
                                           head_dim=512, rope_dim=64, window=128),
                           warmup=1, repeats=3, time_budget_s=8.0, fast_call_s=0.05, bench_ms=300,
                           proxy_warmup_above_S=None, cell_timeout_s=420, matmul=[690.0, "bf16 8192^3"], n_gpus=2)
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps(payload))
    env = dict(os.environ, PYTHONPATH=_pythonpath())
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "streamindex.harness.distributed_cell", str(spec), str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.read_text())
    assert row["status"] == "ok", row["reason"]
    assert row["n_gpus"] == 2 and row["world_size"] == 2 and row["recall_min"] == 1.0
    assert row["time_s"] > 0 and 0 < row["peak_extra_gib"] < row["peak_alloc_gib"]
    assert row["gpu_name"] not in ("", "cpu")
