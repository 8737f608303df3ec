"""What runs inside one cell's own process: build the inputs, call the path, measure it.

:func:`run_cell` returns the metric columns of the row (``schema.METRIC_COLUMNS`` plus the
device provenance); an out-of-memory error becomes ``status = "oom"`` and any other exception
``status = "error"``, each with its reason. Nothing here writes results: the parent records.
"""
from __future__ import annotations

import math
import os
import time
import traceback

from . import schema
from .cellspec import CellSpec
from .measure import measure_call

FP8_SLICE_S = 65536  # fp8 inputs above this S are drawn and quantised in query slices


def run_cell(spec: CellSpec, *, matmul: tuple[float, str] | None) -> dict:
    """Measure one cell; never raises (the outcome is in ``status`` / ``reason``)."""
    t0 = time.perf_counter()
    row = schema.empty_metrics()
    if matmul is not None:
        row["matmul_tflops"], row["matmul_dtype"] = matmul
    try:
        from .provenance import device_provenance

        row.update(device_provenance(spec.device))
        _inject_failure(spec.fail_inject)
        if spec.kind == "csa":
            row.update(_run_csa(spec))
        else:
            row.update(_run_indexer(spec, row.get("matmul_tflops")))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded row
        row["status"], row["reason"] = classify_failure(exc)
        if row["status"] == "error":
            row["note"] = _join(row.get("note"), "traceback: " + _short_traceback(exc))
    row["wall_s"] = time.perf_counter() - t0
    return row


def classify_failure(exc: BaseException) -> tuple[str, str]:
    """``("oom", reason)`` for out-of-memory errors, ``("skipped", reason)`` for a missing optional
    module of the CSA step, else ``("error", "Type: message")``."""
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0][:400] if text else type(exc).__name__
    try:
        import torch

        oom_types = (torch.OutOfMemoryError,)
    except Exception:  # noqa: BLE001
        oom_types = ()
    if isinstance(exc, oom_types) or "out of memory" in text.lower():
        return "oom", first
    if isinstance(exc, _OptionalModuleMissing):
        return "skipped", first
    return "error", first


class _OptionalModuleMissing(RuntimeError):
    """A module the cell needs is not installed / not written yet (recorded as skipped)."""


def _inject_failure(kind: str | None) -> None:
    if kind is None:
        return
    if kind == "error":
        raise RuntimeError("fail_inject=error: injected failure (harness test)")
    if kind == "oom":
        import torch

        raise torch.OutOfMemoryError("fail_inject=oom: injected out of memory (harness test)")
    if kind == "crash":
        os._exit(134)
    if kind == "hang":
        time.sleep(10 ** 6)


def _dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def build_inputs(spec: CellSpec, S: int, fp8: bool):
    """``(q, k, w, q_scale, k_scale, q_ref, k_ref)``: the path's inputs, and the unquantised
    ``q_ref, k_ref`` when the overlap with ``materialize`` is wanted (else ``None``).
    fp8 inputs at long S are drawn and quantised in query slices so the bf16 staging stays small
    (for S <= FP8_SLICE_S they are exactly ``quantize_fp8(make_inputs(...))``)."""
    import torch

    from streamindex import make_inputs
    from streamindex.quant import quantize_fp8

    dtype = _dtype(spec.dtype)
    kw = dict(B=spec.B, ratio=spec.ratio, dtype=dtype, device=spec.device)
    if not fp8:
        q, k, w = make_inputs(S, spec.H, spec.D, seed=spec.seed, **kw)
        return q, k, w, None, None, None, None
    if S <= FP8_SLICE_S:
        q, k, w = make_inputs(S, spec.H, spec.D, seed=spec.seed, **kw)
        q8, k8, qs, ks = quantize_fp8(q, k)
        keep = spec.measure_overlap
        return q8, k8, w, qs, ks, (q if keep else None), (k if keep else None)
    T = max(1, S // spec.ratio)
    q8 = torch.empty(spec.B, S, spec.H, spec.D, dtype=torch.float8_e4m3fn, device=spec.device)
    qs = torch.empty(spec.B, S, spec.H, dtype=torch.float32, device=spec.device)
    w = torch.empty(spec.B, S, spec.H, dtype=torch.float32, device=spec.device)
    k8 = ks = None
    for i, s0 in enumerate(range(0, S, FP8_SLICE_S)):
        s1 = min(S, s0 + FP8_SLICE_S)
        q, k, w_part = make_inputs(s1 - s0, spec.H, spec.D, T=T, seed=spec.seed + i, **kw)
        if k8 is None:
            q8[:, s0:s1], k8, qs[:, s0:s1], ks = quantize_fp8(q, k)
        else:
            q8[:, s0:s1], _, qs[:, s0:s1], _ = quantize_fp8(q, k[:, :1])
        w[:, s0:s1] = w_part
        del q, k, w_part
    return q8, k8, w, qs, ks, None, None


def _run_indexer(spec: CellSpec, matmul_rate) -> dict:
    import torch

    import streamindex
    from streamindex.metrics import overlap, tie_aware_recall, useful_flops

    pathspec = streamindex.get_path(spec.path)
    fp8 = bool(pathspec.fp8)
    out: dict = {"status": "ok", "reason": ""}
    notes = []

    def call_on(q, k, w, qs, ks, path=spec.path):
        return lambda: streamindex.indexer_topk(
            q, k, w, spec.topk, ratio=spec.ratio, offset=spec.offset, path=path,
            workspace_bytes=spec.workspace_bytes, chunk_q=spec.chunk_q, chunk_t=spec.chunk_t,
            q_scale=qs, k_scale=ks, check_finite=False)

    warmup = spec.warmup
    proxy = spec.proxy_warmup_above_S is not None and spec.S > spec.proxy_warmup_above_S
    if proxy and warmup > 0:
        q, k, w, qs, ks, _, _ = build_inputs(spec, spec.proxy_warmup_S, fp8)
        for _ in range(warmup):
            call_on(q, k, w, qs, ks)()
        del q, k, w, qs, ks
        if spec.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        out["warmup_S"] = spec.proxy_warmup_S
        notes.append(f"warm-up on a proxy problem at S={spec.proxy_warmup_S}")
        warmup = 0
    else:
        out["warmup_S"] = spec.S if warmup else math.nan

    q, k, w, qs, ks, q_ref, k_ref = build_inputs(spec, spec.S, fp8)
    if proxy and spec.warmup > 0:  # kernel variants that only the full length reaches
        streamindex.precompile(q, k, w, spec.topk, ratio=spec.ratio, offset=spec.offset, path=spec.path,
                               q_scale=qs, k_scale=ks)
    if fp8:
        notes.append(f"q/k quantised from {spec.dtype} to {str(q.dtype).replace('torch.', '')} with per-token scales")
    m = measure_call(call_on(q, k, w, qs, ks), device=spec.device, warmup=warmup, repeats=spec.repeats,
                     time_budget_s=spec.time_budget_s, fast_call_s=spec.fast_call_s, bench_ms=spec.bench_ms,
                     measure_time=spec.measure_time, measure_memory=spec.measure_memory)
    notes += m.notes
    out.update(warmup=spec.warmup, n_repeats=m.n_repeats, timing_method=m.timing_method,
               peak_alloc_gib=m.peak_alloc_gib, peak_extra_gib=m.peak_extra_gib)
    flops = useful_flops(spec.S, spec.T, spec.H, spec.D, spec.ratio, spec.offset, spec.B)
    out["useful_flops"] = flops
    if spec.measure_time:
        out["time_s"] = m.time_s
        out["tflops"] = flops / m.time_s / 1e12
        out["tokens_per_s"] = spec.B * spec.S / m.time_s
        if matmul_rate and not math.isnan(matmul_rate):
            out["frac_peak"] = out["tflops"] / matmul_rate
    idx = m.output
    if spec.measure_recall:
        rows = sample_rows(spec.S, spec.recall_rows, spec.seed, device=q.device)
        rec = tie_aware_recall(idx, q, k, w, topk=spec.topk, ratio=spec.ratio, offset=spec.offset,
                               rows=rows, q_scale=qs, k_scale=ks, tol_factor=spec.tol_factor)
        out["recall_mean"], out["recall_min"] = float(rec.mean()), float(rec.min())
        notes.append(f"recall on {rows.numel()} sampled rows"
                     + (" vs the fp64 oracle of the dequantised fp8 inputs" if fp8 else ""))
    if spec.measure_overlap:
        if spec.path == "materialize":
            out["overlap_vs_materialize"] = 1.0
        else:
            qr, kr = (q_ref, k_ref) if fp8 else (q, k)
            try:
                ref = call_on(qr, kr, w, None, None, path="materialize")()
                out["overlap_vs_materialize"] = float(overlap(idx, ref).mean())
                if fp8:
                    notes.append(f"overlap vs materialize on the unquantised {spec.dtype} inputs")
                del ref
            except torch.OutOfMemoryError as exc:
                notes.append(f"overlap: materialize does not fit ({str(exc).splitlines()[0][:120]})")
    out["note"] = "; ".join(notes)
    return out


def sample_rows(S: int, n: int, seed: int, device):
    """``n`` query rows spread over ``[0, S)``: evenly spaced, plus the last row (all rows when
    ``S <= n``)."""
    import torch

    if S <= n:
        return torch.arange(S, device=device)
    rows = torch.linspace(0, S - 1, n, dtype=torch.float64).round().long()
    return torch.unique(rows).to(device)


def _run_csa(spec: CellSpec) -> dict:
    try:
        from streamindex.csa.bench import measure_csa_cell
    except ImportError as exc:
        raise _OptionalModuleMissing(f"CSA step not available: {type(exc).__name__}: {exc}") from exc
    import torch

    res = measure_csa_cell(S=spec.S, model=dict(spec.model_dims), attn_impl=spec.attn_impl,
                           device=torch.device(spec.device), seed=spec.seed, repeats=spec.repeats,
                           warmup=spec.warmup)
    out = {"status": "ok", "reason": ""}
    out.update({k: v for k, v in dict(res).items()})
    if out.get("time_s") and "tokens_per_s" not in res:
        out["tokens_per_s"] = spec.B * spec.S / out["time_s"]
    return out


def _short_traceback(exc: BaseException, limit: int = 3) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(frames))


def _join(a, b) -> str:
    a = "" if a is None or (isinstance(a, float) and math.isnan(a)) else str(a)
    return f"{a}; {b}" if a else b
