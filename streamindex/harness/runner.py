"""One cell job: what a Hydra job of the cell app does for its cell, whichever launcher runs it
(Hydra's basic launcher in this process, a submitit job, a Ray worker, a SLURM node).

Contract of :func:`run_cell_job`:

* **Resume** — a cell whose ``cell_id`` is already recorded with status ok / oom is not rerun
  (``already_done``).
* **Skip rules** — a cell that cannot fit or finish, judged from recorded rows
  (:mod:`skip_rules`), is recorded as ``skipped`` with the reason.
* **Budget** — past the sweep's ``deadline`` (``max_minutes``), or when the cell's predicted
  time would overrun it, the cell is not started (``not_run``); rerunning continues.
* **Calibration** — the GPU's identity and the matmul rates are measured once per sweep and
  host (:mod:`calibration`); a profile with ``require_gpu`` refuses to record on another GPU
  (:class:`HardwareMismatch`, which stops the sweep).
* **Isolation** — the cell is measured in its own process group (:mod:`isolation`): forked or
  spawned (``launch.start_method``), or under ``torchrun`` when it uses several GPUs. OOM →
  ``oom``; any exception → ``error`` with its reason; a crash or a timeout
  (``hardware.cell_timeout_s``) → ``error`` saying so. Nothing a cell does stops the sweep.
* **Durability** — the row is appended atomically (:func:`results.append_row`) and mirrored
  to ``mirror_dir`` when set; every row names the ``launcher`` that ran it.
* **Progress** — ``start`` / ``end`` events go to the sweep's events file (:mod:`events`).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import events, results, schema, skip_rules
from .calibration import calibrate, denominator, needed_dtype
from .cellspec import CellSpec
from .isolation import run_command, run_isolated
from .provenance import host_provenance, now_iso

#: Environment of a distributed cell (NVLink multicast off: see the scale-out notes).
DISTRIBUTED_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
DISTRIBUTED_MODULE = "streamindex.harness.distributed_cell"


class HardwareMismatch(RuntimeError):
    """The machine is not the one the hardware profile records results for."""


@dataclass
class JobContext:
    """Where and how one cell job runs (from the composed config and Hydra's runtime)."""
    results_dir: str
    launcher: str
    start_method: str
    workdir: Path                 # the sweep's common folder: calibration cache, events
    output_dir: Path              # this job's own folder (spec / result files of spawned cells)
    sweep_id: str
    multirun: str = ""            # Hydra's sweep dir of the multirun this job belongs to
    deadline: float | None = None
    mirror_dir: str | None = None
    require_gpu: str | None = None
    matmul_n: int = 8192


@dataclass
class JobOutcome:
    status: str                   # ok | oom | error | skipped | already_done | not_run
    label: str
    table: str
    reason: str = ""
    time_s: float = math.nan
    time_checked_s: float = math.nan
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"status": self.status, "label": self.label, "table": self.table, "reason": self.reason,
                "time_s": self.time_s, "time_checked_s": self.time_checked_s}

    def message(self) -> str:
        """One line for the user: outcome, cell, time or reason, and the table."""
        if self.status == "ok":
            t = f"{self.time_s:.4g} s per call" if not math.isnan(self.time_s) else "no time measured"
            if not math.isnan(self.time_checked_s):
                t += f" (check_finite=False; the default call with check_finite=True: {self.time_checked_s:.4g} s)"
            return f"ok: {self.label}: {t} -> recorded in {self.table}"
        if self.status == "already_done":
            return f"already recorded: {self.label} has a row in {self.table} ({self.reason}); nothing run"
        if self.status == "not_run":
            return f"not run: {self.label}: {self.reason}"
        return f"{self.status}: {self.label}: {self.reason} -> recorded in {self.table}"


@functools.lru_cache(maxsize=1)
def _host() -> dict:
    return host_provenance()


def prepare_for_fork(triton_interpret: bool) -> None:
    """Import torch and the library once in the job process (never initialising CUDA), with the
    Triton interpreter switched on first when the profile wants it, so forked cells start fast."""
    if triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch  # noqa: F401

    import streamindex

    streamindex.list_paths()


def _fork_safe(spec: CellSpec) -> bool:
    """Forking is safe while this process has not initialised CUDA and its Triton (if imported)
    runs in the mode the cell wants."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return False
    if "triton" in sys.modules and (os.environ.get("TRITON_INTERPRET") == "1") != bool(spec.triton_interpret):
        return False
    return True


def _is_fp8(path: str) -> bool:
    if path == "csa":
        return False
    import streamindex

    return bool(streamindex.get_path(path).fp8)


def _base_row(spec: CellSpec, ctx: JobContext) -> dict:
    row = spec.config_row()
    row.update(_host())
    row.update(date=now_iso(), sweep_id=ctx.sweep_id, cell_id=spec.cell_id, command=spec.command,
               launcher=ctx.launcher)
    row.update(schema.empty_metrics())
    return row


def _record(spec: CellSpec, row: dict, ctx: JobContext, table: Path) -> None:
    results.append_row(table, row)
    if ctx.mirror_dir:
        results.mirror_table(table, ctx.mirror_dir, spec.hardware)


def _measure(spec: CellSpec, ctx: JobContext):
    """Run the cell in its isolated process; ``(result | None, status)``."""
    timeout = spec.cell_timeout_s
    if spec.n_gpus > 1:
        if importlib.util.find_spec(DISTRIBUTED_MODULE) is None:
            return {"status": "skipped", "reason": f"n_gpus={spec.n_gpus} needs {DISTRIBUTED_MODULE}, which "
                                                    "this version of the package does not have"}, "ok"
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        spec_path, out_path = ctx.output_dir / "cell-spec.json", ctx.output_dir / "cell-result.json"
        spec.to_json(spec_path)
        env = dict(os.environ, **DISTRIBUTED_ENV)
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(spec.n_gpus),
                "-m", DISTRIBUTED_MODULE, str(spec_path), str(out_path)]
        res = run_command(argv, timeout_s=timeout, out_path=out_path, env=env)
        return res.result, res.status
    method = ctx.start_method
    if method == "fork" and not _fork_safe(spec):
        method = "spawn"
    if method == "fork":
        prepare_for_fork(spec.triton_interpret)
    env = dict(os.environ, **({"TRITON_INTERPRET": "1"} if spec.triton_interpret else {}))
    res = run_isolated("streamindex.harness.cell_worker:run_cell_dict", {"spec": spec.to_dict()},
                       start_method=method, timeout_s=timeout, scratch_dir=ctx.output_dir, env=env)
    return res.result, res.status


def run_cell_job(spec: CellSpec, ctx: JobContext) -> JobOutcome:
    """Resume check, skip rules, budget, calibration, the isolated measurement and the row (see
    the module docstring). Raises :class:`HardwareMismatch` (and appends a ``fatal`` event)
    when the machine is not the profile's."""
    table = results.table_path(ctx.results_dir, spec.hardware, spec.experiment)
    out = JobOutcome(status="", label=spec.label, table=str(table))

    def end(status, reason="", **kw):
        out.status, out.reason = status, reason
        events.append_event(ctx.workdir, "end", status=status, reason=reason, cell=spec.label,
                            cell_id=spec.cell_id, table=str(table), multirun=ctx.multirun, sweep_id=ctx.sweep_id, **kw)
        return out

    rows = results.read_table(table)
    done = rows[(rows["cell_id"] == spec.cell_id) & rows["status"].isin(schema.DONE_STATUSES)]
    if len(done):
        return end("already_done", f"status {done['status'].iloc[-1]}, {done['date'].iloc[-1]}")
    reason = skip_rules.skip_reason(spec, rows)
    if reason:
        row = _base_row(spec, ctx)
        row.update(status="skipped", reason=reason)
        _record(spec, row, ctx, table)
        return end("skipped", reason)
    if ctx.deadline is not None:
        left = ctx.deadline - time.time()
        if left <= 0 or skip_rules.expected_cell_s(spec, rows) > left:
            return end("not_run", "max_minutes spent (or the cell's predicted time would overrun it); "
                                  "rerun the same command to continue")

    events.append_event(ctx.workdir, "start", cell=spec.label, cell_id=spec.cell_id, multirun=ctx.multirun,
                        sweep_id=ctx.sweep_id)
    fp8 = _is_fp8(spec.path)
    dtypes = {needed_dtype(spec.device, spec.dtype, fp8)} | ({"bf16"} if spec.kind == "csa" and spec.device == "cuda" else set())
    method = ctx.start_method if _fork_safe(spec) else "spawn"
    cal = calibrate(device=spec.device, n=ctx.matmul_n, dtypes=dtypes, workdir=ctx.workdir,
                    triton_interpret=spec.triton_interpret, start_method=method)
    if ctx.require_gpu and ctx.require_gpu not in cal.get("gpu_name", ""):
        msg = (f"hardware profile {spec.hardware!r} records only results measured on a GPU whose name contains "
               f"{ctx.require_gpu!r}, but this machine has {cal.get('gpu_name')!r}. Use another profile (e.g. "
               f"hardware={spec.hardware} hardware.name=<yours> hardware.require_gpu=null) so that its rows go "
               "to their own results folder.")
        events.append_event(ctx.workdir, "fatal", reason=msg, multirun=ctx.multirun, sweep_id=ctx.sweep_id)
        raise HardwareMismatch(msg)
    if spec.kind == "csa" and spec.device == "cuda":
        spec.matmul_tflops = denominator(cal, spec.device, "bf16", False)[0]

    t0 = time.monotonic()
    res, status = _measure(spec, ctx)
    row = _base_row(spec, ctx)
    row.update({k: cal.get(k) for k in ("gpu_name", "gpu_driver", "cuda_version")})
    if res is not None:
        row.update(res)
    elif status == "timeout":
        row.update(status="error", reason=f"timeout: cell process killed after {spec.cell_timeout_s:g} s")
    else:
        row.update(status="error", reason=f"cell process died ({status}) without a result")
    ws = row.get("world_size")
    if ws is None or (isinstance(ws, float) and math.isnan(ws)):
        row["world_size"] = spec.n_gpus
    if res is None:
        row["wall_s"] = time.monotonic() - t0
    rate, label = denominator(cal, spec.device, "bf16" if spec.kind == "csa" else spec.dtype, fp8)
    row["matmul_tflops"], row["matmul_dtype"] = rate, label
    tflops = row.get("tflops")
    if tflops is not None and not (isinstance(tflops, float) and math.isnan(tflops)):
        row["frac_peak"] = float(tflops) / (float(row["world_size"]) * rate)
    _record(spec, row, ctx, table)
    out.time_s = float(row.get("time_s", math.nan) or math.nan)
    out.time_checked_s = float(row.get("time_checked_s", math.nan) or math.nan)
    return end(row["status"], str(row.get("reason") or ""), time_s=out.time_s)
