"""One ``e2e`` sweep cell: the whole CSA step (indexer + sparse attention) at V4 shapes, timed.

Timing and memory follow the harness protocol of :func:`streamindex.harness.measure.measure_call`
(warm-up calls, one call with the peak-memory counters reset, then CUDA-event repeats); the
indexer and attention stage times of the same calls come from CUDA events that
:func:`streamindex.csa.csa_forward` records per stage launch (no extra host syncs).

Attention efficiency: ``attn_tflops`` counts the useful FLOPs ``4·Hq·D·n`` per query with ``n``
its KV rows (``min(topk, visible compressed) + min(window, pos + 1)``): ``Q·Kᵀ`` and ``P·V``, 2 per
multiply-add; for late queries that is ``S·Hq·(topk + window)·(D + D)·2``. ``attn_frac_peak``
divides it by the bf16 dense matmul rate measured on the same GPU (``matmul_tflops``, measured
here when the caller does not pass the sweep's). ``attn_gather_tbps`` is the KV bytes the queries
select (``n·D·2`` per token) per attention second; a 128-head token is two 64-head tiles that
each gather them, the second time mostly from L2.

The main-attention q is streamed through a provider over one random ``[1, chunk, Hq, D]`` buffer
and the output through a consumer that drops it (as the next layer would consume it): at S = 2^20
either full tensor would be 64 GiB (Flash) / 128 GiB (Pro).
"""
from __future__ import annotations

import statistics

import torch

from ..csa.attention import resolve_impl
from ..csa.checks import attention_flops_bytes
from ..csa.forward import csa_forward, default_chunks, stage_seconds
from .measure import matmul_tflops as measure_matmul_tflops
from .measure import measure_call

MATMUL_N = 8192  # size of the dense bf16 matmul that measures the denominator when none is passed


def attention_work(S: int, model: dict, offset: int = 0) -> dict:
    """Closed-form useful FLOPs and gathered bytes of the sparse attention over queries ``0..S-1``
    (``T = (offset + S) // ratio`` compressed rows)."""
    Hq, D = int(model["attn_heads"]), int(model.get("head_dim", 512))
    topk, ratio, window = int(model["topk"]), int(model["ratio"]), int(model.get("window", 128))
    flops, gathered, qo = attention_flops_bytes(S, Hq=Hq, D=D, topk=topk, ratio=ratio, window=window,
                                                offset=offset, T=max(1, (offset + S) // ratio))
    return {"attn_flops": flops, "attn_gathered_bytes": gathered, "attn_qo_bytes": qo}


def measure_csa_cell(*, S: int, model: dict, attn_impl: str, device, seed: int, repeats: int, warmup: int,
                     matmul_tflops: float | None = None, time_budget_s: float = 120.0, fast_call_s: float = 0.0,
                     bench_ms: int = 200) -> dict:
    """Time one CSA step (``csa_forward``) at sequence length ``S``.

    ``model``: ``H, D, topk, ratio, attn_heads, head_dim (512), window (128)``; optional
    ``indexer_path`` (default ``"stream"``; a callable is accepted), ``chunk``, ``index_chunk``,
    ``workspace_bytes``. ``matmul_tflops``: the bf16 dense matmul rate of this GPU measured in the
    same sweep (TFLOP/s); measured here (``n = 8192``, fp32 on CPU) when ``None``. ``repeats``,
    ``warmup``, ``time_budget_s``, ``fast_call_s``, ``bench_ms``: as in
    :func:`streamindex.harness.measure.measure_call` (the default ``fast_call_s = 0`` times every
    repeat with CUDA events, so each has its own stage times).

    Returns ``time_s`` (median time of one full call), ``time_indexer_s`` / ``time_attn_s`` (medians
    over the timed calls of the per-call stage sums), ``peak_alloc_gib`` / ``peak_extra_gib``,
    ``attn_tflops``, ``attn_frac_peak`` (``attn_tflops / matmul_tflops``), ``matmul_tflops``,
    ``matmul_dtype``, ``attn_gather_tbps``, ``e2e_over_indexer`` (``time_s / time_indexer_s``),
    ``tokens_per_s``, the FLOP / byte counts, chunk sizes, the resolved attention implementation,
    ``n_repeats`` and ``timing_method``.
    """
    device = torch.device(device)
    dev = device.type
    from ..inputs import make_inputs

    H, Di = int(model["H"]), int(model["D"])
    topk, ratio = int(model["topk"]), int(model["ratio"])
    Hq, D = int(model["attn_heads"]), int(model.get("head_dim", 512))
    window = int(model.get("window", 128))
    indexer_path = model.get("indexer_path", "stream")
    d_chunk, d_index = default_chunks(Hq, D)
    chunk = int(model.get("chunk") or d_chunk)
    index_chunk = int(model.get("index_chunk") or max(d_index, chunk))
    T = max(1, S // ratio)

    if matmul_tflops is None:
        matmul_tflops, matmul_dtype = measure_matmul_tflops(dev, MATMUL_N if dev == "cuda" else 256)
    else:
        matmul_dtype = "bf16" if dev == "cuda" else "fp32 cpu"

    xq, ik, iw = make_inputs(S, H, Di, T=T, ratio=ratio, dtype=torch.bfloat16, device=device, seed=seed)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    kvc = torch.randn(1, T, D, device=device, generator=g).to(torch.bfloat16)
    kvw = torch.randn(1, S, D, device=device, generator=g).to(torch.bfloat16)
    sink = torch.randn(Hq, device=device, generator=g)
    qbuf = torch.randn(1, min(chunk, S), Hq, D, device=device, generator=g).to(torch.bfloat16)
    impl = resolve_impl(attn_impl, device=device, H=Hq, D=D, dtype=torch.bfloat16, topk=topk)

    calls = []  # per call: CUDA stage events (GPU) or the stage-seconds dict (CPU)

    def call():
        if dev == "cuda":
            ev = []
            calls.append(ev)
            kw = {"timing_events": ev}
        else:
            tm = {}
            calls.append(tm)
            kw = {"timings": tm}
        return csa_forward(xq, ik, iw, lambda a, b: qbuf[:, :b - a], kvc, kvw, sink, topk=topk, ratio=ratio,
                           chunk=chunk, index_chunk=index_chunk, attn_impl=impl, indexer_path=indexer_path,
                           out=lambda a, b, o: None, window=window, workspace_bytes=model.get("workspace_bytes"),
                           check_finite=False, **kw)

    m = measure_call(call, device=dev, warmup=max(0, warmup), repeats=max(1, repeats), time_budget_s=time_budget_s,
                     fast_call_s=fast_call_s, bench_ms=bench_ms)
    if dev == "cuda":
        torch.cuda.synchronize(device)
        stages = [stage_seconds(ev) for ev in calls[max(0, warmup):]]
    else:
        stages = calls[max(0, warmup):]
    time_idx = statistics.median(s["indexer_s"] for s in stages)
    time_attn = statistics.median(s["attn_s"] for s in stages)
    time_s = m.time_s
    work = attention_work(S, model)
    attn_tflops = work["attn_flops"] / time_attn / 1e12 if time_attn > 0 else float("nan")
    return {
        "path": "csa", "S": S, "attn_impl": attn_impl, "attn_impl_resolved": impl, "indexer_path": str(indexer_path),
        "time_s": time_s, "time_indexer_s": time_idx, "time_attn_s": time_attn,
        "peak_alloc_gib": m.peak_alloc_gib, "peak_extra_gib": m.peak_extra_gib,
        "attn_tflops": attn_tflops, "attn_frac_peak": attn_tflops / matmul_tflops if matmul_tflops else float("nan"),
        "matmul_tflops": matmul_tflops, "matmul_dtype": matmul_dtype,
        "attn_gather_tbps": work["attn_gathered_bytes"] / time_attn / 1e12 if time_attn > 0 else float("nan"),
        "e2e_over_indexer": time_s / time_idx if time_idx > 0 else float("nan"),
        "tokens_per_s": S / time_s if time_s > 0 else float("nan"),
        "chunk": chunk, "index_chunk": index_chunk, "attn_heads": Hq, "head_dim": D, "window": window,
        "n_repeats": m.n_repeats, "timing_method": m.timing_method, "warmup": max(0, warmup), **work,
    }
