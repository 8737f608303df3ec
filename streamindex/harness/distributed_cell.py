"""One sweep cell across several ranks: ``torchrun --standalone --nproc-per-node N -m
streamindex.harness.distributed_cell SPEC_JSON OUT_JSON``.

``SPEC_JSON`` holds ``CellSpec.to_dict()`` plus ``matmul: [tflops, dtype]`` (or null) and,
optionally, ``scheme`` (the query sharding, default ``"zigzag"``: equal causal work and equal rows
per rank) and ``collective_timeout_s``. Every rank

1. joins the process group (NCCL on CUDA after ``torch.cuda.set_device(LOCAL_RANK)``, gloo on CPU)
   and a gloo group for control messages, with timeouts on both, so that a rank that fails or
   stops never leaves the others waiting forever;
2. draws only its own query rows of the full problem (:func:`draw_local_inputs`);
3. warms up, then times the call as the single-GPU cell does, except that every timed call
   starts after a barrier and its time is the slowest rank's (CUDA events per rank, max over
   ranks); the peak memory columns are the largest rank's;
4. measures recall on the sampled rows of its shard against the fp64 oracle.

Rank 0 writes ``OUT_JSON``: the metric keys of :func:`streamindex.harness.cell_worker.run_cell`
plus ``n_gpus`` (GPUs used; 0 on CPU) and ``world_size``. ``tflops`` counts the useful FLOPs of
the whole call over its time; ``frac_peak`` divides it by ``n_gpus`` × the single-GPU matmul
rate. An exception or OOM on any rank becomes ``status = error / oom`` with ``reason = "rank r:
..."``; after each phase the ranks agree on the outcome over the gloo group before going on.
When a peer does not answer within the collective timeout, rank 0 still writes the row and then
exits with code 3, so that torchrun stops the remaining ranks. ``fail_inject`` (harness tests)
acts on the last rank only, to exercise exactly that path.

The timed call is the distributed entry point without gathering (context-parallel prefill
keeps its output sharded): :func:`streamindex.distributed.indexer_topk_distributed` for indexer
cells, :func:`streamindex.distributed.csa_forward_distributed` for ``kind = csa`` cells, whose
protocol is the single-GPU CSA cell's (``warmup`` calls, then ``repeats`` timed ones, medians
of the call and of its indexer / attention stage sums).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import statistics
import sys
import time

from . import cell_worker, schema
from .cell_worker import build_inputs, classify_failure, inject_failure, sample_rows, short_traceback, torch_dtype

#: Query rows per slice of a long multi-GPU cell's inputs (drawn slice by slice, see draw_local_inputs).
SLICE_S = 1 << 16
from .cellspec import CellSpec

DEFAULT_SCHEME = "zigzag"
EXIT_PEER_LOST = 3
MAX_FAST_REPEATS = 100


class PeerFailure(RuntimeError):
    """Another rank reported a failure; carries that rank's ``(status, reason)``."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# ----------------------------------------------------------------------------- the process group

class Ranks:
    """This process's place in the job: rank, world size, device, and the two process groups
    (``data``: NCCL or gloo, what the measured call uses; ``ctrl``: gloo, for agreement)."""

    def __init__(self, device_type: str, timeout_s: float):
        import torch
        import torch.distributed as dist

        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        timeout = datetime.timedelta(seconds=timeout_s)
        if device_type == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
            dist.init_process_group("nccl", timeout=timeout, device_id=self.device)
        else:
            self.device = torch.device("cpu")
            dist.init_process_group("gloo", timeout=timeout)
        self.ctrl = dist.new_group(backend="gloo", timeout=timeout)
        self.dist = dist

    def agree(self, outcome: tuple[str, str] | None, payload=None) -> list:
        """All-gather ``(outcome, payload)`` over the control group; raise :class:`PeerFailure` with
        the first failing rank's outcome if any rank failed, else return the payloads by rank."""
        got = [None] * self.world_size
        self.dist.all_gather_object(got, (outcome, payload), group=self.ctrl)
        for r, (out, _) in enumerate(got):
            if out is not None:
                raise PeerFailure(out[0], f"rank {r}: {out[1]}")
        return [p for _, p in got]

    def barrier(self) -> None:
        """Every rank's device idle, then a barrier on the data group."""
        self.sync()
        if self.device.type == "cuda":
            self.dist.barrier(device_ids=[self.local_rank])
        else:
            self.dist.barrier()
        self.sync()

    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def phase(ranks: Ranks, fn, *args, share=None):
    """Run ``fn(*args)`` on this rank, then agree with the others (:meth:`Ranks.agree`). Returns
    ``(result, shared)``: this rank's result and, by rank, ``share(result)`` (``None`` without
    ``share``): small picklable values such as times or recall values."""
    try:
        res, outcome = fn(*args), None
    except Exception as exc:  # noqa: BLE001 - reported to every rank, recorded by rank 0
        res, outcome = None, _outcome(exc)
    shared = ranks.agree(outcome, share(res) if share is not None and outcome is None else None)
    return res, shared


def _outcome(exc: BaseException) -> tuple[str, str]:
    status, reason = classify_failure(exc)
    if status == "error":
        reason = f"{reason} (traceback: {short_traceback(exc)})"
    return status, reason


# ----------------------------------------------------------------------------- inputs

def draw_local_inputs(spec: CellSpec, ranges, fp8: bool, *, S: int | None = None, dtype: str | None = None,
                      device=None):
    """This rank's rows of the problem a single-GPU cell draws: ``(q, k, w, q_scale, k_scale)``
    with ``q``, ``w``, ``q_scale`` holding the rows of ``ranges`` (ascending ``(s0, s1)``),
    concatenated, and ``k``, ``k_scale`` whole. ``S`` (default ``spec.S``) and ``dtype`` (default
    ``spec.dtype``) override the spec's, and ``device`` (e.g. ``cuda:1``; default ``spec.device``)
    names the rank's device explicitly.

    * ``S <= SLICE_S`` (or inputs other than ``random``): the whole problem of
      :func:`cell_worker.build_inputs` (the single-GPU cell's values), then this rank's rows
      (copied, the rest freed).
    * Longer: query slice ``i`` (rows ``[i·SLICE_S, (i+1)·SLICE_S)``) is
      ``make_inputs(n_i, T=T, seed=seed + i)``, the keys come from slice 0, and fp8 inputs are
      quantised per token. Only the slices that touch this rank's rows (and slice 0) are drawn, so
      no rank builds the whole q (128 GiB at 16M tokens in fp8). The values are the same for any
      sharding, and drawn like the single-GPU cell's (N(0, 1), the same scales), but not the same
      numbers: the single-GPU cell draws the whole problem at once.
    """
    import torch

    from streamindex import make_inputs
    from streamindex.distributed import local_rows
    from streamindex.quant import quantize_fp8

    S = spec.S if S is None else S
    spec = dataclasses.replace(spec, S=S, dtype=dtype or spec.dtype, device=str(device or spec.device))
    inputs = getattr(spec, "inputs", "random") or "random"
    slice_s = SLICE_S
    if S <= slice_s or inputs != "random":
        q, k, w, qs, ks, _, _ = build_inputs(spec, S, fp8)
        take = (lambda x: None if x is None else local_rows(x, ranges).clone())
        return take(q), k, take(w), take(qs), ks

    T = max(1, S // spec.ratio)
    n_local = sum(s1 - s0 for s0, s1 in ranges)
    B, H, D, dev = spec.B, spec.H, spec.D, torch.device(spec.device)
    q = torch.empty(B, n_local, H, D, dtype=torch.float8_e4m3fn if fp8 else torch_dtype(spec.dtype), device=dev)
    w = torch.empty(B, n_local, H, dtype=torch.float32, device=dev)
    qs = torch.empty(B, n_local, H, dtype=torch.float32, device=dev) if fp8 else None
    k = ks = None
    wanted = sorted({0} | {i for s0, s1 in ranges for i in range(s0 // slice_s, (s1 - 1) // slice_s + 1)})
    kw = dict(B=B, ratio=spec.ratio, dtype=torch_dtype(spec.dtype), device=dev)
    for i in wanted:
        a0, a1 = i * slice_s, min(S, (i + 1) * slice_s)
        qi, ki, wi = make_inputs(a1 - a0, H, D, T=T, seed=spec.seed + i, **kw)
        qsi = None
        if fp8:
            qi, k8, qsi, ks8 = quantize_fp8(qi, ki if i == 0 else ki[:, :1])
            if i == 0:
                k, ks = k8, ks8
        elif i == 0:
            k = ki
        del ki
        base = 0
        for s0, s1 in ranges:
            lo, hi = max(s0, a0), min(s1, a1)
            if lo < hi:
                dst = slice(base + lo - s0, base + hi - s0)
                q[:, dst] = qi[:, lo - a0:hi - a0]
                w[:, dst] = wi[:, lo - a0:hi - a0]
                if fp8:
                    qs[:, dst] = qsi[:, lo - a0:hi - a0]
            base += s1 - s0
        del qi, wi, qsi
    return q, k, w, qs, ks


# ----------------------------------------------------------------------------- timing

class Timer:
    """Times ``fn()`` on every rank after a barrier; the call's time is the slowest rank's."""

    def __init__(self, ranks: Ranks):
        self.ranks = ranks

    def run(self, fn, memory: bool) -> tuple[dict, object]:
        """One timed call: ``({"t": seconds, "peak": bytes, "extra": bytes, **extra}, output)`` of
        this rank (memory NaN on CPU). ``fn`` returns ``(output, extra dict)``."""
        import torch

        dev = self.ranks.device
        cuda = dev.type == "cuda"
        self.ranks.barrier()
        if cuda and memory:
            torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev) if cuda else 0
        if cuda:
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            out, extra = fn()
            e1.record()
            e1.synchronize()
            t = e0.elapsed_time(e1) / 1e3
        else:
            t0 = time.perf_counter()
            out, extra = fn()
            t = time.perf_counter() - t0
        rec = {"t": t, "peak": math.nan, "extra": math.nan, **extra}
        if cuda and memory:
            peak = torch.cuda.max_memory_allocated(dev)
            rec.update(peak=float(peak), extra=float(peak - before))
        return rec, out


def timed_repeats(ranks: Ranks, timer: Timer, fn, *, spec: CellSpec, min_repeats: int, adaptive: bool):
    """The timed calls: the first with the memory counters reset, then more while the total of
    the slowest-rank times stays within ``spec.time_budget_s`` (``adaptive``; a call shorter than
    ``spec.fast_call_s`` is repeated for about ``spec.bench_ms``, at most 100 times) up to
    ``max(spec.repeats, min_repeats)``. Returns ``(records by repeat, by rank), last output``; every
    rank takes the same decisions, from the same gathered times."""
    recs, out = [], None
    target = max(1, spec.repeats, min_repeats)
    while True:
        (rec, out), shared = phase(ranks, timer.run, fn, not recs and spec.measure_memory, share=lambda r: r[0])
        recs.append(shared)
        times = [max(r["t"] for r in p) for p in recs]
        if len(recs) == 1 and adaptive and times[0] < spec.fast_call_s:
            target = max(target, min(MAX_FAST_REPEATS, int(spec.bench_ms / 1e3 / max(times[0], 1e-6))))
        if len(recs) >= target:
            break
        if adaptive and sum(times) + statistics.median(times) > max(spec.time_budget_s, spec.bench_ms / 1e3):
            break
    return recs, out


def summarise(recs: list, world_size: int) -> dict:
    """``time_s`` (median over repeats of the slowest rank), the peaks (largest rank, first call),
    and a note with the per-rank median times."""
    times = [max(r["t"] for r in p) for p in recs]
    per_rank = [statistics.median(p[r]["t"] for p in recs) for r in range(world_size)]
    first = recs[0]
    return {
        "time_s": statistics.median(times), "n_repeats": len(recs),
        "peak_alloc_gib": max(r["peak"] for r in first) / 2**30,
        "peak_extra_gib": max(r["extra"] for r in first) / 2**30,
        "rank_times": per_rank,
    }


# ----------------------------------------------------------------------------- the cells

def _shards(spec: CellSpec, S: int, W: int, scheme: str):
    from streamindex.distributed import shard_bounds

    return shard_bounds(S, W, ratio=spec.ratio, offset=spec.offset, T=max(1, S // spec.ratio), scheme=scheme)


def run_indexer(ranks: Ranks, spec: CellSpec, scheme: str, matmul_rate) -> dict:
    import torch

    import streamindex
    from streamindex.distributed import indexer_topk_distributed
    from streamindex.metrics import tie_aware_recall, useful_flops

    fp8 = bool(streamindex.get_path(spec.path).fp8)
    W, out, notes = ranks.world_size, {"status": "ok", "reason": ""}, []

    def local(S):
        shards = _shards(spec, S, W, scheme)
        return shards, draw_local_inputs(spec, shards[ranks.rank], fp8, S=S, device=ranks.device)

    def caller(S, shards, inp):
        q, k, w, qs, ks = inp
        return lambda: (indexer_topk_distributed(
            q, k, w, spec.topk, ratio=spec.ratio, offset=spec.offset, S=S, bounds=shards, path=spec.path,
            workspace_bytes=spec.workspace_bytes, chunk_q=spec.chunk_q, chunk_t=spec.chunk_t, q_scale=qs, k_scale=ks,
            check_finite=False), {})

    warmup = spec.warmup
    proxy = spec.proxy_warmup_above_S is not None and spec.S > spec.proxy_warmup_above_S and warmup > 0
    if proxy:
        def warm_proxy():
            P = spec.proxy_warmup_S
            shards, inp = local(P)
            for _ in range(warmup):
                caller(P, shards, inp)()
            del inp
            ranks.sync()
            if ranks.device.type == "cuda":
                torch.cuda.empty_cache()
        phase(ranks, warm_proxy)
        out["warmup_S"] = spec.proxy_warmup_S
        notes.append(f"warm-up on a proxy problem at S={spec.proxy_warmup_S}")
        warmup = 0
    else:
        out["warmup_S"] = spec.S if warmup else math.nan

    (shards, inp), _ = phase(ranks, local, spec.S)
    q, k, w, qs, ks = inp
    mine = shards[ranks.rank]
    if proxy:  # kernel variants that only the full length reaches
        def precompile():
            base = 0
            for s0, s1 in mine:
                sl = slice(base, base + s1 - s0)
                streamindex.precompile(q[:, sl], k, w[:, sl], spec.topk, ratio=spec.ratio, offset=spec.offset + s0,
                                       path=spec.path, q_scale=None if qs is None else qs[:, sl], k_scale=ks)
                base += s1 - s0
        phase(ranks, precompile)
    call = caller(spec.S, shards, inp)

    def warm():
        for _ in range(warmup):
            call()
        ranks.sync()
    phase(ranks, warm)
    if fp8:
        notes.append(f"q/k quantised from {spec.dtype} to e4m3 with per-token scales")
    recs, idx = timed_repeats(ranks, Timer(ranks), call, spec=spec, min_repeats=1, adaptive=True)
    s = summarise(recs, W)
    flops = useful_flops(spec.S, spec.T, spec.H, spec.D, spec.ratio, spec.offset, spec.B)
    out.update(warmup=spec.warmup, n_repeats=s["n_repeats"], useful_flops=flops,
               timing_method=f"{'cuda events' if ranks.device.type == 'cuda' else 'wall clock'} median of the "
                             f"slowest of {W} ranks, after a barrier")
    if spec.measure_memory and ranks.device.type == "cuda":
        out.update(peak_alloc_gib=s["peak_alloc_gib"], peak_extra_gib=s["peak_extra_gib"])
    elif spec.measure_memory:
        notes.append("memory not measured: no CUDA allocator statistics on CPU")
    if spec.measure_time:
        n_gpus = W if ranks.device.type == "cuda" else 0
        out.update(time_s=s["time_s"], tflops=flops / s["time_s"] / 1e12, tokens_per_s=spec.B * spec.S / s["time_s"])
        if matmul_rate and not math.isnan(matmul_rate):
            out["frac_peak"] = out["tflops"] / (matmul_rate * max(1, n_gpus))
        notes.append("rank times " + " / ".join(f"{t:.4g}" for t in s["rank_times"]) + " s")
    notes.append(f"{scheme} shards " + " ".join(str(r) for r in shards))

    if spec.measure_recall:
        rows = sample_rows(spec.S, spec.recall_rows, spec.seed, device="cpu").tolist()

        def recall():
            vals, base = [], 0
            for s0, s1 in mine:
                mine_rows = [r - s0 for r in rows if s0 <= r < s1]
                sl = slice(base, base + s1 - s0)
                base += s1 - s0
                if not mine_rows:
                    continue
                rec = tie_aware_recall(idx[:, sl], q[:, sl], k, w[:, sl], topk=spec.topk, ratio=spec.ratio,
                                       offset=spec.offset + s0, rows=torch.tensor(mine_rows, device=q.device),
                                       q_scale=None if qs is None else qs[:, sl], k_scale=ks,
                                       tol_factor=spec.tol_factor)
                vals += rec.flatten().tolist()
            return vals
        _, per_rank = phase(ranks, recall, share=lambda v: v)
        allv = [v for p in per_rank for v in p]
        out["recall_mean"], out["recall_min"] = sum(allv) / len(allv), min(allv)
        notes.append(f"recall on {len(rows)} sampled rows" + (" vs the fp64 oracle of the dequantised fp8 inputs"
                                                              if fp8 else ""))
    if spec.measure_overlap:
        notes.append("overlap vs materialize: not measured in distributed cells")
    out["note"] = "; ".join(notes)
    return out


def run_csa(ranks: Ranks, spec: CellSpec, scheme: str, matmul_rate) -> dict:
    import torch

    from streamindex.csa.attention import resolve_impl
    from streamindex.csa.forward import default_chunks
    from streamindex.distributed import csa_forward_distributed

    from .csa_measure import attention_work

    model = dict(spec.model_dims)
    S, W = spec.S, ranks.world_size
    topk, ratio = int(model["topk"]), int(model["ratio"])
    Hq, D = int(model["attn_heads"]), int(model.get("head_dim", 512))
    window = int(model.get("window", 128))
    indexer_path = model.get("indexer_path", "stream")
    d_chunk, d_index = default_chunks(Hq, D)
    chunk = int(model.get("chunk") or d_chunk)
    index_chunk = int(model.get("index_chunk") or max(d_index, chunk))
    T = max(1, S // ratio)
    dev = ranks.device
    impl = resolve_impl(spec.attn_impl or "auto", device=dev, H=Hq, D=D, dtype=torch.bfloat16)
    shards = _shards(dataclasses.replace(spec, ratio=ratio, offset=0), S, W, scheme)
    csa_spec = dataclasses.replace(spec, H=int(model["H"]), D=int(model["D"]), topk=topk, ratio=ratio, offset=0, B=1)

    def build():
        xq, ik, iw, _, _ = draw_local_inputs(csa_spec, shards[ranks.rank], False, dtype="bf16", device=dev)
        g = torch.Generator(device=dev).manual_seed(spec.seed + 1)  # the single-GPU CSA cell's draws
        kvc = torch.randn(1, T, D, device=dev, generator=g).to(torch.bfloat16)
        kvw = torch.randn(1, S, D, device=dev, generator=g).to(torch.bfloat16)
        sink = torch.randn(Hq, device=dev, generator=g)
        qbuf = torch.randn(1, min(chunk, S), Hq, D, device=dev, generator=g).to(torch.bfloat16)
        return xq, ik, iw, kvc, kvw, sink, qbuf

    (xq, ik, iw, kvc, kvw, sink, qbuf), _ = phase(ranks, build)

    def call():
        tm = {}
        csa_forward_distributed(xq, ik, iw, lambda a, b: qbuf[:, :b - a], kvc, kvw, sink, topk=topk, ratio=ratio,
                                S=S, bounds=shards, out=lambda a, b, o: None, chunk=chunk, index_chunk=index_chunk,
                                attn_impl=impl, indexer_path=indexer_path, window=window,
                                workspace_bytes=model.get("workspace_bytes"), check_finite=False, timings=tm)
        return None, {"indexer": tm["indexer_s"], "attn": tm["attn_s"]}

    def warm():
        for _ in range(max(0, spec.warmup)):
            call()
        ranks.sync()
    phase(ranks, warm)
    recs, _ = timed_repeats(ranks, Timer(ranks), call, spec=spec, min_repeats=1, adaptive=False)
    s = summarise(recs, W)
    t_idx = statistics.median(max(r["indexer"] for r in p) for p in recs)
    t_attn = statistics.median(max(r["attn"] for r in p) for p in recs)
    work = attention_work(S, model)
    attn_tflops = work["attn_flops"] / t_attn / 1e12 if t_attn > 0 else math.nan
    time_s = s["time_s"]
    cuda = dev.type == "cuda"
    return {
        "status": "ok", "reason": "", "path": "csa", "S": S, "attn_impl": spec.attn_impl,
        "attn_impl_resolved": impl, "indexer_path": str(indexer_path),
        "time_s": time_s, "time_indexer_s": t_idx, "time_attn_s": t_attn,
        "peak_alloc_gib": s["peak_alloc_gib"] if cuda else math.nan,
        "peak_extra_gib": s["peak_extra_gib"] if cuda else math.nan,
        "attn_tflops": attn_tflops,
        "attn_frac_peak": attn_tflops / (matmul_rate * W) if matmul_rate and t_attn > 0 else math.nan,
        "e2e_over_indexer": time_s / t_idx if t_idx > 0 else math.nan,
        "tokens_per_s": S / time_s if time_s > 0 else math.nan,
        "chunk": chunk, "index_chunk": index_chunk, "attn_heads": Hq, "head_dim": D, "window": window,
        "repeats": len(recs), "n_repeats": len(recs), "warmup": max(0, spec.warmup),
        "timing_method": f"{'cuda events' if cuda else 'wall clock'} median of the slowest of {W} ranks, after a "
                         "barrier; stage times: median of the slowest rank's sums",
        "note": f"{scheme} shards " + " ".join(str(r) for r in shards) + "; rank times "
                + " / ".join(f"{t:.4g}" for t in s["rank_times"]) + f" s; attn_frac_peak: of {W} x the bf16 "
                "matmul rate",
        **work,
    }


# ----------------------------------------------------------------------------- entry point

def spec_from_payload(payload: dict) -> CellSpec:
    """The :class:`CellSpec` of ``payload`` (keys it does not know are ignored here)."""
    names = {f.name for f in dataclasses.fields(CellSpec)}
    return CellSpec(**{k: v for k, v in payload.items() if k in names})


def collective_timeout_s(payload: dict) -> float:
    """``collective_timeout_s`` from the payload, else a third of the cell's timeout, in [60, 1800] s."""
    if payload.get("collective_timeout_s"):
        return float(payload["collective_timeout_s"])
    return max(60.0, min(1800.0, float(payload.get("cell_timeout_s") or 1800) / 3))


def run_distributed_cell(payload: dict) -> tuple[dict | None, int]:
    """Measure the cell on this rank; ``(row, exit code)``, the row on rank 0 only."""
    t0 = time.perf_counter()
    row = schema.empty_metrics()
    matmul = payload.get("matmul")
    if matmul:
        row["matmul_tflops"], row["matmul_dtype"] = matmul
    ranks, code = None, 0
    try:
        spec = spec_from_payload(payload)
        ranks = Ranks(spec.device, collective_timeout_s(payload))
        W = ranks.world_size
        row.update(world_size=W, n_gpus=W if spec.device == "cuda" else 0)
        want = payload.get("n_gpus")
        if want and spec.device == "cuda" and int(want) != W:
            raise ValueError(f"the cell asks for n_gpus={want} but {W} ranks were started")
        scheme = payload.get("scheme") or DEFAULT_SCHEME

        def setup():
            from .provenance import device_provenance

            prov = device_provenance(spec.device) if ranks.rank == 0 else {}
            if ranks.rank == W - 1:
                inject_failure(spec.fail_inject)
            return prov
        prov, _ = phase(ranks, setup)
        row.update(prov)
        if spec.kind == "csa":
            res = run_csa(ranks, spec, scheme, row.get("matmul_tflops"))
        else:
            res = run_indexer(ranks, spec, scheme, row.get("matmul_tflops"))
        row.update(res)
    except PeerFailure as exc:
        row["status"], row["reason"] = exc.status, exc.reason
    except Exception as exc:  # noqa: BLE001 - a failed collective (a peer gone or timed out) or set-up
        row["status"], row["reason"] = _outcome(exc)
        if ranks is not None and ranks.world_size > 1:
            row["reason"] = (f"rank {ranks.rank}: a collective failed or a peer rank did not answer within "
                             f"{collective_timeout_s(payload):g} s: {row['reason']}")
            code = EXIT_PEER_LOST
    row["wall_s"] = time.perf_counter() - t0
    rank = ranks.rank if ranks is not None else int(os.environ.get("RANK", "0"))
    if ranks is not None and code == 0:
        ranks.close()
    return (row if rank == 0 else None), code


def _write_json(obj, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, default=str)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: torchrun --standalone --nproc-per-node N -m streamindex.harness.distributed_cell "
              "SPEC_JSON OUT_JSON", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        payload = json.load(fh)
    if payload.get("triton_interpret"):
        os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
    from streamindex.distributed.collectives import keep_multicast_off

    keep_multicast_off()
    row, code = run_distributed_cell(payload)
    if row is not None:
        _write_json(row, argv[1])
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
