"""What runs inside one cell's own process: build the inputs, call the path, measure it.

:func:`run_cell` returns the metric columns of the row (``schema.METRIC_COLUMNS`` plus the
device provenance); an out-of-memory error becomes ``status = "oom"`` and any other exception
``status = "error"``, each with its reason. Nothing here writes results: the cell job records.

What is measured for an indexer cell:

* ``time_s``: the call with ``check_finite=False`` (:func:`measure.measure_call`), with the
  memory columns measured on its first timed call;
* ``time_checked_s``: the default call (``check_finite=True``), timed the same way right after
  (memory not measured again); left NaN, with a note, when one call costs more than half of
  ``time_budget_s``;
* ``tflops``, ``tokens_per_s`` (and ``frac_peak`` when a matmul rate is given; the cell job
  fills it in from the sweep's calibration otherwise);
* tie-aware recall on ``recall_rows`` sampled rows, and the overlap with ``materialize`` (NaN
  for ``materialize`` itself: it is the reference).

Inputs come from ``streamindex.make_inputs`` / ``make_fp8_inputs`` with ``kind=spec.inputs``.

Two ways in: :func:`run_cell_dict` (what :func:`isolation.run_isolated` calls, in a forked or
spawned child) and ``python -m streamindex.harness.cell_worker SPEC_JSON OUT_JSON`` (the same
file protocol as the distributed cell under ``torchrun``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

from . import schema
from .cellspec import CellSpec
from .measure import measure_call

FP8_OVERLAP_MAX_S = 65536  # fp8 cells that want the overlap with materialize keep the unquantised inputs up to here


def run_cell(spec: CellSpec, *, matmul: tuple[float, str] | None = None) -> dict:
    """Measure one cell; never raises (the outcome is in ``status`` / ``reason``). ``matmul``:
    ``(tflops, label)`` of the denominator, to fill ``frac_peak`` here (else the caller does)."""
    t0 = time.perf_counter()
    row = schema.empty_metrics()
    row["world_size"] = 1
    try:
        from .provenance import device_provenance

        row.update(device_provenance(spec.device))
        inject_failure(spec.fail_inject)
        if spec.kind == "csa":
            row.update(_run_csa(spec))
        else:
            row.update(_run_indexer(spec))
        if matmul is not None:
            row["matmul_tflops"], row["matmul_dtype"] = matmul
            if not math.isnan(row.get("tflops", math.nan)):
                row["frac_peak"] = row["tflops"] / (row["world_size"] * matmul[0])
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded row
        row["status"], row["reason"] = classify_failure(exc)
        if row["status"] == "error":
            row["note"] = schema.join_notes(row.get("note"), "traceback: " + short_traceback(exc))
    row["wall_s"] = time.perf_counter() - t0
    return row


def run_cell_dict(spec: dict) -> dict:
    """:func:`run_cell` of a :meth:`CellSpec.to_dict` (the isolated child's entry point); the
    Triton interpreter is switched on first when the cell asks for it."""
    if spec.get("triton_interpret"):
        os.environ["TRITON_INTERPRET"] = "1"
    return run_cell(CellSpec.from_dict(spec))


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
    """A module the cell needs is not installed (recorded as skipped)."""


def inject_failure(kind: str | None) -> None:
    """The failure a harness test asks a cell for (``fail_inject``): an error, an OOM, a crash of
    the process or a hang; nothing for ``None``."""
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


def torch_dtype(name: str):
    """The torch dtype of a config's dtype name (``bf16`` / ``fp16`` / ``fp32``)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def build_inputs(spec: CellSpec, S: int, fp8: bool):
    """``(q, k, w, q_scale, k_scale, q_ref, k_ref)``: the path's inputs, and the unquantised
    ``q_ref, k_ref`` of an fp8 cell that wants the overlap with ``materialize`` (else ``None``).

    bf16 / fp16 / fp32 cells: ``make_inputs``. fp8 cells: ``make_fp8_inputs`` (drawn and
    quantised slice by slice, no full-length bf16 staging), except those that want the overlap
    (up to ``FP8_OVERLAP_MAX_S``), which quantise ``make_inputs`` and keep its output."""
    from streamindex import make_fp8_inputs, make_inputs
    from streamindex.quant import quantize_fp8

    T = max(1, S // spec.ratio)
    if not fp8 or (spec.measure_overlap and S <= FP8_OVERLAP_MAX_S):
        q, k, w = make_inputs(S, spec.H, spec.D, B=spec.B, T=T, ratio=spec.ratio, dtype=torch_dtype(spec.dtype),
                              device=spec.device, seed=spec.seed, kind=spec.inputs)
        if not fp8:
            return q, k, w, None, None, None, None
        q8, k8, qs, ks = quantize_fp8(q, k)
        return q8, k8, w, qs, ks, q, k
    q8, k8, w, qs, ks = make_fp8_inputs(S, spec.H, spec.D, B=spec.B, T=T, ratio=spec.ratio, device=spec.device,
                                        seed=spec.seed, kind=spec.inputs)
    return q8, k8, w, qs, ks, None, None


def _run_indexer(spec: CellSpec) -> dict:
    import torch

    import streamindex
    from streamindex.metrics import overlap, tie_aware_recall, useful_flops

    fp8 = bool(streamindex.get_path(spec.path).fp8)
    out: dict = {"status": "ok", "reason": ""}
    notes = []

    def call_on(q, k, w, qs, ks, path=spec.path, check_finite=False):
        return lambda: streamindex.indexer_topk(
            q, k, w, spec.topk, ratio=spec.ratio, offset=spec.offset, path=path,
            workspace_bytes=spec.workspace_bytes, chunk_q=spec.chunk_q, chunk_t=spec.chunk_t,
            q_scale=qs, k_scale=ks, check_finite=check_finite)

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
        notes.append(f"q/k quantised to {str(q.dtype).replace('torch.', '')} with per-token scales")
    if spec.inputs != "random":
        notes.append(f"inputs: {spec.inputs}")
    timing = dict(device=spec.device, repeats=spec.repeats, time_budget_s=spec.time_budget_s,
                  fast_call_s=spec.fast_call_s, bench_ms=spec.bench_ms)
    m = measure_call(call_on(q, k, w, qs, ks), warmup=warmup, measure_time=spec.measure_time,
                     measure_memory=spec.measure_memory, **timing)
    notes += m.notes
    out.update(warmup=spec.warmup, n_repeats=m.n_repeats, timing_method=m.timing_method,
               peak_alloc_gib=m.peak_alloc_gib, peak_extra_gib=m.peak_extra_gib, world_size=1)
    flops = useful_flops(spec.S, spec.T, spec.H, spec.D, spec.ratio, spec.offset, spec.B)
    out["useful_flops"] = flops
    idx = m.output
    m.output = None
    if spec.measure_time:
        out["time_s"] = m.time_s
        out["tflops"] = flops / m.time_s / 1e12
        out["tokens_per_s"] = spec.B * spec.S / m.time_s
        if spec.measure_time_checked:
            if 2 * m.time_s <= spec.time_budget_s:
                mc = measure_call(call_on(q, k, w, qs, ks, check_finite=True), warmup=1, measure_time=True,
                                  measure_memory=False, **timing)
                out["time_checked_s"] = mc.time_s
                mc.output = None
            else:
                notes.append(f"time_checked_s not measured: one call ({m.time_s:.3g} s) exceeds half of "
                             f"time_budget_s={spec.time_budget_s:g}")
    if spec.measure_recall:
        rows = sample_rows(spec.S, spec.recall_rows, spec.seed, device=q.device)
        rec = tie_aware_recall(idx, q, k, w, topk=spec.topk, ratio=spec.ratio, offset=spec.offset,
                               rows=rows, q_scale=qs, k_scale=ks, tol_factor=spec.tol_factor)
        out["recall_mean"], out["recall_min"] = float(rec.mean()), float(rec.min())
        notes.append(f"recall on {rows.numel()} sampled rows"
                     + (" vs the fp64 oracle of the dequantised fp8 inputs" if fp8 else ""))
    if spec.measure_overlap:
        if spec.path == "materialize":
            notes.append("overlap_vs_materialize not computed: materialize is the reference")
        elif fp8 and q_ref is None:
            notes.append(f"overlap_vs_materialize not computed: fp8 inputs above S={FP8_OVERLAP_MAX_S} "
                         "are quantised without keeping the unquantised ones")
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
    out["note"] = schema.join_notes(*notes)
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
    import torch

    try:
        from .csa_measure import measure_csa_cell
    except ImportError as exc:  # the CSA step's optional modules (tilelang is imported lazily)
        raise _OptionalModuleMissing(f"CSA step not available: {type(exc).__name__}: {exc}") from exc
    res = dict(measure_csa_cell(S=spec.S, model=dict(spec.model_dims), attn_impl=spec.attn_impl,
                                device=torch.device(spec.device), seed=spec.seed, repeats=spec.repeats,
                                warmup=spec.warmup, matmul_tflops=spec.matmul_tflops))
    out = {"status": "ok", "reason": "", "world_size": 1}
    out.update(res)
    if out.get("time_s") and "tokens_per_s" not in res:
        out["tokens_per_s"] = spec.B * spec.S / out["time_s"]
    return out


def short_traceback(exc: BaseException, limit: int = 3) -> str:
    """The last ``limit`` frames of ``exc``, innermost first, as ``file:line function``."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(frames))


def main(argv: list[str] | None = None) -> int:
    """``python -m streamindex.harness.cell_worker SPEC_JSON OUT_JSON``: measure the cell of
    ``SPEC_JSON`` (a :meth:`CellSpec.to_json`) and write its metric dict to ``OUT_JSON``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m streamindex.harness.cell_worker SPEC_JSON OUT_JSON", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    row = run_cell_dict(spec)
    tmp = argv[1] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(row, fh, default=str)
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    from .isolation import die_with_parent

    die_with_parent()
    sys.exit(main())
