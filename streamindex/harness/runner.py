"""Runs sweep cells, each in its own child process, and records one row per cell.

Contract:

* **Isolation** — every cell is measured in a fresh child process (``fork`` of a parent that
  has imported torch and the library but never initialised CUDA, or ``spawn``), so an OOM, a
  crash or a broken allocator never reaches the next cell. The parent never touches CUDA.
* **Outcomes are rows** — OOM → ``status=oom``; any exception → ``error`` with its reason; a
  crashed child (signal / exit code) and a timeout (``hardware.cell_timeout_s``) → ``error``
  with ``reason`` saying so. Nothing a cell does stops the sweep.
* **Durability** — each row is appended atomically as soon as it exists
  (:func:`results.append_row`), and mirrored to ``mirror_dir`` when set.
* **Resume** — a cell whose ``cell_id`` is already recorded with status ok / oom is not rerun;
  cells that cannot fit or finish, judged from recorded rows (:mod:`skip_rules`), are recorded
  as ``skipped`` with the reason.
* **Budget** — with ``max_minutes`` the sweep stops cleanly *between* cells once the time is
  spent (or the next cell's predicted time would overrun it); rerunning continues it.
* **Calibration** — the dense matmul rate (``frac_peak``'s denominator) and the GPU's identity
  are measured once per sweep process, in a child, before the first cell that runs; a profile
  with ``require_gpu`` refuses to record on any other GPU.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import results, schema, skip_rules
from .cellspec import CellSpec
from .provenance import host_provenance, now_iso


class HardwareMismatch(RuntimeError):
    """The machine is not the one the hardware profile records results for."""


@dataclass
class SweepSummary:
    counts: dict = field(default_factory=lambda: {k: 0 for k in
                                                  ("already_done", "ok", "oom", "error", "skipped", "not_run")})
    stopped_by_budget: bool = False
    tables: set = field(default_factory=set)

    def line(self) -> str:
        c = self.counts
        s = ", ".join(f"{k} {v}" for k, v in c.items() if v)
        return s + (" — stopped by max_minutes; rerun the same command to continue" if self.stopped_by_budget else "")


def prepare_parent(triton_interpret: bool) -> None:
    """Set the environment and import torch + the library once, in the parent, without
    initialising CUDA, so forked cells start fast."""
    if triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    import torch  # noqa: F401

    import streamindex  # noqa: F401
    import streamindex.metrics  # noqa: F401
    import streamindex.quant  # noqa: F401

    streamindex.list_paths()


def _start_method(requested: str) -> str:
    torch = sys.modules.get("torch")
    if requested == "fork" and torch is not None and torch.cuda.is_initialized():
        print("[harness] CUDA is initialised in the sweep process: cells use 'spawn' instead of 'fork'",
              file=sys.stderr)
        return "spawn"
    return requested


# ----------------------------------------------------------------------------- child processes

def _write_json(obj, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, default=str)
    os.replace(tmp, path)


def _cell_child(spec_dict: dict, matmul, out_path: str) -> None:
    if spec_dict.get("triton_interpret"):
        os.environ["TRITON_INTERPRET"] = "1"
    from .cell_worker import run_cell

    row = run_cell(CellSpec(**spec_dict), matmul=tuple(matmul) if matmul else None)
    _write_json(row, out_path)


def _calibration_child(device: str, n: int, triton_interpret: bool, out_path: str) -> None:
    if triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    from .measure import matmul_tflops
    from .provenance import device_provenance

    out = device_provenance(device)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("hardware profile wants CUDA but torch sees no GPU")
    out["matmul_tflops"], out["matmul_dtype"] = matmul_tflops(device, n)
    _write_json(out, out_path)


def run_in_child(target, args: tuple, *, timeout_s: float, start_method: str):
    """Run ``target(*args, out_path)`` in a child process. Returns ``(result | None, status)`` where
    status is ``"ok"``, ``"timeout"`` or ``"exit <code>"`` / ``"signal <n>"``."""
    ctx = mp.get_context(_start_method(start_method))
    fd, out_path = tempfile.mkstemp(prefix="streamindex-cell-", suffix=".json")
    os.close(fd)
    os.unlink(out_path)
    proc = ctx.Process(target=target, args=(*args, out_path), daemon=False)
    proc.start()
    proc.join(timeout_s)
    if proc.is_alive():
        proc.kill()
        proc.join()
        status = "timeout"
    elif proc.exitcode == 0:
        status = "ok"
    elif proc.exitcode is not None and proc.exitcode < 0:
        status = f"signal {-proc.exitcode}"
    else:
        status = f"exit {proc.exitcode}"
    result = None
    if os.path.exists(out_path):
        with open(out_path) as fh:
            result = json.load(fh)
        os.unlink(out_path)
    return result, status


# ----------------------------------------------------------------------------- the sweep

class Sweep:
    """State shared by the cells of one driver / entry-point process: calibration, provenance,
    the wall-time budget and the sweep id."""

    _calibrations: dict = {}

    def __init__(self, *, results_dir, hardware_name: str, device: str, require_gpu: str | None,
                 matmul_n: int, triton_interpret: bool, start_method: str = "fork",
                 mirror_dir: str | None = None, max_minutes: float | None = None, progress: bool = True):
        self.results_dir = Path(results_dir)
        self.hardware_name, self.device, self.require_gpu = hardware_name, device, require_gpu
        self.matmul_n, self.triton_interpret, self.start_method = matmul_n, triton_interpret, start_method
        self.mirror_dir, self.progress = mirror_dir, progress
        self.t0 = time.monotonic()
        self.deadline = None if max_minutes is None else self.t0 + 60.0 * max_minutes
        self.sweep_id = now_iso()
        self.host = host_provenance()
        prepare_parent(triton_interpret)

    # -- calibration ---------------------------------------------------------------------------
    def calibration(self) -> dict:
        key = (self.device, self.matmul_n, self.triton_interpret)
        if key not in Sweep._calibrations:
            args = (self.device, self.matmul_n, self.triton_interpret)
            res, status = run_in_child(_calibration_child, args, timeout_s=600, start_method=self.start_method)
            if res is None and self.start_method == "fork":
                # A library that initialised the CUDA driver at import breaks forked children: try spawn.
                res, status2 = run_in_child(_calibration_child, args, timeout_s=600, start_method="spawn")
                if res is not None:
                    print(f"[harness] a forked process could not use {self.device} ({status}); "
                          "cells use 'spawn' instead", file=sys.stderr)
                    self.start_method = "spawn"
            if res is None:
                raise HardwareMismatch(f"calibration on device {self.device!r} failed ({status}); "
                                       "is this the machine the hardware profile is for?")
            res["start_method"] = self.start_method
            Sweep._calibrations[key] = res
        cal = Sweep._calibrations[key]
        self.start_method = cal.get("start_method", self.start_method)
        if self.require_gpu and self.require_gpu not in cal.get("gpu_name", ""):
            raise HardwareMismatch(
                f"hardware profile {self.hardware_name!r} records only results measured on a GPU whose "
                f"name contains {self.require_gpu!r}, but this machine has {cal.get('gpu_name')!r}. "
                f"Use another profile (e.g. hardware={self.hardware_name} hardware.name=<yours> "
                "hardware.require_gpu=null) so its rows go to their own results folder.")
        return cal

    def remaining_s(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    # -- rows ------------------------------------------------------------------------------------
    def _base_row(self, spec: CellSpec) -> dict:
        row = spec.config_row()
        row.update(self.host)
        row.update(date=now_iso(), sweep_id=self.sweep_id, cell_id=spec.cell_id, command=spec.command)
        return row

    def _record(self, spec: CellSpec, row: dict, summary: SweepSummary) -> Path:
        path = results.table_path(self.results_dir, self.hardware_name, spec.experiment)
        results.append_row(path, row)
        if self.mirror_dir:
            results.mirror_table(path, self.mirror_dir, self.hardware_name)
        summary.tables.add(str(path))
        return path

    def record_skipped(self, spec: CellSpec, reason: str, summary: SweepSummary) -> None:
        row = self._base_row(spec)
        row.update(schema.empty_metrics())
        row.update(status="skipped", reason=reason)
        self._record(spec, row, summary)
        summary.counts["skipped"] += 1

    def run_one(self, spec: CellSpec, summary: SweepSummary) -> dict:
        """Measure one cell in its own process and record its row (whatever the outcome)."""
        cal = self.calibration()
        t0 = time.monotonic()
        res, status = run_in_child(_cell_child, (spec.to_dict(), (cal["matmul_tflops"], cal["matmul_dtype"])),
                                   timeout_s=spec.cell_timeout_s, start_method=self.start_method)
        row = self._base_row(spec)
        row.update(schema.empty_metrics())
        row.update({k: cal.get(k) for k in ("gpu_name", "gpu_driver", "cuda_version")})
        row.update(matmul_tflops=cal["matmul_tflops"], matmul_dtype=cal["matmul_dtype"])
        if res is not None:
            row.update(res)
        elif status == "timeout":
            row.update(status="error", reason=f"timeout: cell process killed after {spec.cell_timeout_s:g} s")
        else:
            row.update(status="error", reason=f"cell process died ({status}) without a result")
        if res is None:
            row["wall_s"] = time.monotonic() - t0
        self._record(spec, row, summary)
        summary.counts[row["status"]] = summary.counts.get(row["status"], 0) + 1
        return row

    def run(self, specs: list[CellSpec], *, label: str = "", summary: SweepSummary | None = None) -> SweepSummary:
        """Run ``specs`` in order with resume, skip rules, the wall-time budget and a progress bar."""
        from tqdm import tqdm

        tqdm.monitor_interval = 0
        summary = summary or SweepSummary()
        tables: dict[str, object] = {}

        def recorded(spec):
            path = results.table_path(self.results_dir, self.hardware_name, spec.experiment)
            if str(path) not in tables:
                tables[str(path)] = results.read_table(path)
            return str(path), tables[str(path)]

        bar = tqdm(specs, desc=label or "sweep", unit="cell", disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True)
        for spec in bar:
            key, rows = recorded(spec)
            done = rows[(rows["cell_id"] == spec.cell_id) & rows["status"].isin(schema.DONE_STATUSES)]
            if len(done):
                summary.counts["already_done"] += 1
                continue
            reason = skip_rules.skip_reason(spec, rows)
            if reason:
                self.record_skipped(spec, reason, summary)
                tables.pop(key)
                continue
            if self.remaining_s() <= 0 or skip_rules.expected_cell_s(spec, rows) > self.remaining_s():
                summary.stopped_by_budget = True
                summary.counts["not_run"] += len(specs) - bar.n
                break
            bar.set_postfix_str(f"{spec.path} {spec.model} S={spec.S}", refresh=True)
            row = self.run_one(spec, summary)
            tables.pop(key)
            if row["status"] != "ok":
                bar.write(f"[{row['status']}] {spec.command}: {row.get('reason', '')}")
        bar.close()
        return summary
