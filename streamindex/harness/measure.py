"""Timing and memory of one call, and the dense matmul rate behind ``frac_peak`` — the one timing
helper of the project (the harness, the CSA step's cell and the device probes call it).

Protocol of :func:`measure_call`:

1. ``warmup`` untimed calls (the caller may instead warm up on a smaller proxy problem);
2. one timed call with the peak-memory counters reset just before it: ``peak_alloc_gib`` is
   ``torch.cuda.max_memory_allocated()`` over that call (inputs included) and
   ``peak_extra_gib`` that peak minus ``torch.cuda.memory_allocated()`` just before it;
3. more timed calls: when the first one took less than ``fast_call_s``, the median of
   ``triton.testing.do_bench`` over ``bench_ms`` milliseconds; otherwise CUDA-event times of
   further calls while their sum stays within ``time_budget_s`` (at most ``repeats`` in all),
   so a call that takes seconds is repeated fewer times. ``time_s`` is the median.

On CPU: ``time.perf_counter`` wall time, memory columns NaN (with a note saying why).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

GIB = float(1 << 30)


@dataclass
class Measurement:
    time_s: float = math.nan
    n_repeats: int = 0
    timing_method: str = ""
    peak_alloc_gib: float = math.nan
    peak_extra_gib: float = math.nan
    notes: list = field(default_factory=list)
    output: object = None       # the last call's return value (for recall / overlap)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _timed_call(fn, device: str):
    """``(seconds, result)`` of one call: CUDA events on the GPU, wall time on CPU."""
    if device == "cuda":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, out
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure_call(fn, *, device: str, warmup: int, repeats: int, time_budget_s: float,
                 fast_call_s: float, bench_ms: int, measure_time: bool = True,
                 measure_memory: bool = True) -> Measurement:
    """Measure ``fn()`` as described in the module docstring; keeps the last call's output."""
    m = Measurement()
    out = None
    for _ in range(warmup):
        out = fn()
        del out
        out = None
        _sync(device)

    # The call whose memory is measured; also the first timed sample.
    mem = measure_memory and device == "cuda"
    if mem:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    elif measure_memory:
        m.notes.append("memory not measured: no CUDA allocator statistics on CPU")
    t_first, out = _timed_call(fn, device)
    if mem:
        peak = torch.cuda.max_memory_allocated()
        m.peak_alloc_gib = peak / GIB
        m.peak_extra_gib = (peak - before) / GIB
    if not measure_time:
        m.output = out
        return m

    times = [t_first]
    if device == "cuda" and t_first < fast_call_s and repeats > 1:
        from triton.testing import do_bench

        ms = do_bench(fn, warmup=max(1, int(10 * t_first * 1e3)), rep=bench_ms, return_mode="median")
        m.time_s, m.timing_method = ms / 1e3, "triton.do_bench median"
        m.n_repeats = max(1, int(bench_ms / max(ms, 1e-3)))
        m.output = out
        return m
    while len(times) < repeats and sum(times) + statistics.median(times) <= time_budget_s:
        del out
        out = None
        t, out = _timed_call(fn, device)
        times.append(t)
    m.time_s = statistics.median(times)
    m.n_repeats = len(times)
    m.timing_method = "cuda events median" if device == "cuda" else "wall clock median"
    m.output = out
    return m


#: Input dtypes whose dense matmul rate :func:`matmul_tflops` measures on CUDA.
MATMUL_DTYPES = ("bf16", "fp16", "fp32", "fp8")


def matmul_tflops(device: str, n: int, dtype: str = "bf16") -> tuple[float, str]:
    """Dense ``n x n x n`` matmul rate (TFLOP/s, median of ``triton.testing.do_bench``) and a
    label naming what was measured, e.g. ``(688.1, "bf16 8192^3")``.

    On CUDA, ``dtype`` is ``bf16`` / ``fp16`` / ``fp32`` (``a @ b``) or ``fp8`` (e4m3 operands
    through ``torch._scaled_mm`` with unit scales and a bf16 output: the denominator of the fp8
    paths). On CPU the rate is always the fp32 one (``"fp32 cpu n^3"``, median of 5 wall-clock
    calls): there is no fp8 or bf16 matmul unit to compare with.
    """
    import torch

    if dtype not in MATMUL_DTYPES:
        raise ValueError(f"dtype must be one of {list(MATMUL_DTYPES)}, got {dtype!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if device == "cuda":
        from triton.testing import do_bench

        if dtype == "fp8":
            a = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
            b = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()   # column-major, as required
            one = torch.ones((), device="cuda")

            def fn():
                return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            label = f"fp8_e4m3 {n}^3 (torch._scaled_mm)"
        else:
            tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
            a = torch.randn(n, n, device="cuda", dtype=tdt)
            b = torch.randn(n, n, device="cuda", dtype=tdt)

            def fn():
                return a @ b
            label = f"{dtype} {n}^3"
        ms = do_bench(fn, warmup=100, rep=500, return_mode="median")
        return 2 * n ** 3 / (ms / 1e3) / 1e12, label
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e12, f"fp32 cpu {n}^3"
