"""One ``e2e`` sweep cell: the whole CSA step (indexer + sparse attention) at V4 shapes, timed.

The attention floor per query at absolute position ``pos`` with ``n = min(topk, visible) +
min(window, pos + 1)`` KV rows (one shared KV head of ``D = 512``):

* bytes: ``n·D·2`` gathered (each row read once per token, for all heads) + ``2·Hq·D·2`` for q and o;
* FLOPs: ``4·Hq·D·n`` (``Q·Kᵀ`` and ``P·V``).

``floor = max(FLOPs / matmul rate, bytes / copy rate)`` with the ceilings measured on our H200
(bf16 dense matmul ≈ 790 TFLOP/s on random data, device copy ≈ 4.3 TB/s; override with
``model["matmul_flops"]`` / ``model["copy_bytes_per_s"]``). V4-Flash (Hq = 64, topk = 512) has
``128`` FLOP per gathered byte, under the H200's ~184 ridge, so its floor is the gather; V4-Pro
(Hq = 128, topk = 1024) is FLOP-bound. ``attn_frac_floor = floor / time_attn_s``.

The main-attention q is streamed through a provider over one random ``[1, chunk, Hq, D]`` buffer
and the output through a consumer that drops it (as the next layer would consume it): at S = 2^20
either full tensor would be 64 GiB (Flash) / 128 GiB (Pro).
"""
from __future__ import annotations

import statistics
import time

import torch

from .attention import resolve_impl
from .checks import attention_flops_bytes
from .forward import csa_forward, default_chunks

MATMUL_FLOPS = 790e12   # bf16 dense matmul, random data, H200 (KINDS.md: 769-798; DESIGN.md 686-699 at 8192^3)
COPY_BYTES_PER_S = 4.3e12


def attention_floor(S: int, model: dict, offset: int = 0) -> dict:
    """Closed-form FLOPs, bytes and floor time of the sparse attention over ``S`` queries."""
    Hq, D = int(model["attn_heads"]), int(model.get("head_dim", 512))
    topk, ratio, window = int(model["topk"]), int(model["ratio"]), int(model.get("window", 128))
    flops, gathered, qo = attention_flops_bytes(S, Hq=Hq, D=D, topk=topk, ratio=ratio, window=window,
                                                offset=offset, T=max(1, (offset + S) // ratio))
    mm = float(model.get("matmul_flops", MATMUL_FLOPS))
    bw = float(model.get("copy_bytes_per_s", COPY_BYTES_PER_S))
    t_flop, t_byte = flops / mm, (gathered + qo) / bw
    return {"attn_flops": flops, "attn_bytes": gathered + qo, "attn_gathered_bytes": gathered,
            "floor_flop_s": t_flop, "floor_byte_s": t_byte, "floor_s": max(t_flop, t_byte),
            "floor_bound": "flops" if t_flop >= t_byte else "bytes", "matmul_flops": mm, "copy_bytes_per_s": bw}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_csa_cell(*, S: int, model: dict, attn_impl: str, device, seed: int, repeats: int, warmup: int) -> dict:
    """Time one CSA step (``csa_forward``) at sequence length ``S``.

    ``model``: ``H, D, topk, ratio, attn_heads, head_dim (512), rope_dim (64), window (128)``; optional
    ``indexer_path`` (default ``"stream"``), ``chunk``, ``index_chunk``, ``workspace_bytes``,
    ``matmul_flops``, ``copy_bytes_per_s``.

    Returns ``time_s`` (median CUDA-event time of one full call), ``time_indexer_s`` / ``time_attn_s``
    (medians of the per-call stage sums), ``peak_alloc_gib`` / ``peak_extra_gib`` (max allocated
    during the call, and minus what was allocated just before it: inputs, the q chunk buffer),
    ``attn_tflops`` (useful FLOPs / ``time_attn_s``), ``attn_frac_floor`` (floor / ``time_attn_s``),
    ``e2e_over_indexer`` (``time_s / time_indexer_s``), the floor terms, the chunk sizes and the
    resolved attention implementation.
    """
    device = torch.device(device)
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

    xq, ik, iw = make_inputs(S, H, Di, T=T, ratio=ratio, dtype=torch.bfloat16, device=device, seed=seed)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    kvc = torch.randn(1, T, D, device=device, generator=g).to(torch.bfloat16)
    kvw = torch.randn(1, S, D, device=device, generator=g).to(torch.bfloat16)
    sink = torch.randn(Hq, device=device, generator=g)
    qbuf = torch.randn(1, min(chunk, S), Hq, D, device=device, generator=g).to(torch.bfloat16)
    impl = resolve_impl(attn_impl, device=device, H=Hq, D=D, dtype=torch.bfloat16)

    def call(tm):
        return csa_forward(xq, ik, iw, lambda a, b: qbuf[:, :b - a], kvc, kvw, sink, topk=topk, ratio=ratio,
                           chunk=chunk, index_chunk=index_chunk, attn_impl=impl, indexer_path=indexer_path,
                           out=lambda a, b, o: None, window=window, workspace_bytes=model.get("workspace_bytes"),
                           check_finite=False, timings=tm)

    for _ in range(max(0, warmup)):
        call({})
    _sync(device)
    times, t_idx, t_attn, peaks, extras = [], [], [], [], []
    for _ in range(max(1, repeats)):
        tm = {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            call(tm)
            e1.record()
            torch.cuda.synchronize(device)
            times.append(e0.elapsed_time(e1) / 1e3)
            peak = torch.cuda.max_memory_allocated(device)
            peaks.append(peak / 2**30)
            extras.append((peak - base) / 2**30)
        else:
            t0 = time.perf_counter()
            call(tm)
            times.append(time.perf_counter() - t0)
            peaks.append(float("nan"))
            extras.append(float("nan"))
        t_idx.append(tm["indexer_s"])
        t_attn.append(tm["attn_s"])
    fl = attention_floor(S, model)
    time_attn = statistics.median(t_attn)
    time_idx = statistics.median(t_idx)
    time_s = statistics.median(times)
    return {
        "path": "csa", "S": S, "attn_impl": attn_impl, "attn_impl_resolved": impl, "indexer_path": str(indexer_path),
        "time_s": time_s, "time_indexer_s": time_idx, "time_attn_s": time_attn,
        "peak_alloc_gib": max(peaks), "peak_extra_gib": max(extras),
        "attn_tflops": fl["attn_flops"] / time_attn / 1e12 if time_attn > 0 else float("nan"),
        "attn_frac_floor": fl["floor_s"] / time_attn if time_attn > 0 else float("nan"),
        "e2e_over_indexer": time_s / time_idx if time_idx > 0 else float("nan"),
        "tokens_per_s": S / time_s if time_s > 0 else float("nan"),
        "chunk": chunk, "index_chunk": index_chunk, "attn_heads": Hq, "head_dim": D, "window": window,
        "repeats": max(1, repeats), "warmup": max(0, warmup), **fl,
    }
