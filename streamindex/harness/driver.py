"""The reproduce driver: ``streamindex-reproduce`` / ``python -m experiments.reproduce``.

``streamindex-reproduce hardware=auto|h200|cpu_smoke experiments=[scaling,recall] launcher=basic``
runs each block of each experiment as one Hydra multirun of the cell app
(``streamindex.harness.cell_app --multirun experiment=E block=B ...``): Hydra's basic sweeper
expands the block's ``hydra.sweeper.params`` and the selected launcher (``basic``,
``submitit_local``, ``submitit_slurm``, ``ray``) runs the cell jobs. Each job records its own
row (resume, skip rules, isolation: :mod:`runner`). The driver itself only

* composes and validates every cell's config before any work (Hydra's own expansion of the
  block, :func:`plan_block`), applies ``select.*`` and ``hardware.S_max`` by narrowing the
  block's sweep values, and refuses a selection that matches nothing;
* with a launcher that runs cells concurrently (``launch.waves``), starts one multirun per S,
  smallest first, so that the skip rules see every smaller S recorded;
* follows the jobs' progress events for a tqdm bar naming the running cell, stops between
  multiruns once ``max_minutes`` is spent (the jobs stop between cells), and stops at once on
  Ctrl-C with one line saying how to resume;
* prints the bench table and regenerates figures and ``REPORT.md``; its last line counts the
  cells by outcome, and it exits 1 when any cell errored.

The multirun's own output (Hydra's log, the jobs' messages) goes to ``multirun.log`` in its
folder under the driver's output folder (``outputs/<date>/<time>/<experiment>/<block>``).
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import events
from .cellspec import CellSpec, entry_command, spec_from_config
from .compose import (CellComposer, check_launcher, compose_cell, experiment_option, fail, forwarded,
                      forwarded_hydra, launcher_from_argv, resolve_hardware)
from .config import ConfigError, config_search_path, register_configs
from .isolation import die_with_parent

register_configs()

#: Keys whose sweep values ``select.*`` / the hardware profile narrow.
NARROWED_KEYS = ("path", "model", "S", "n_gpus")


@dataclass
class Multirun:
    """One Hydra multirun the driver starts: a block of an experiment (or one S wave of it)."""
    experiment: str
    block: str
    overrides: list            # what the multirun gets beyond experiment/hardware/block/launcher/sweep
    cells: list = field(default_factory=list)
    wave: str = ""

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.block}" + (f" S={self.wave}" if self.wave else "")


# ----------------------------------------------------------------------------- planning

def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _values(override) -> list[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def _keep(key: str, value: str, select, hardware) -> bool:
    if key == "path":
        return select.paths is None or value in select.paths
    if key == "model":
        return select.models is None or value in select.models
    if key == "S":
        s = int(value)
        return ((select.S_min is None or s >= select.S_min) and (select.S_max is None or s <= select.S_max)
                and (hardware.S_max is None or s <= hardware.S_max))
    if key == "n_gpus":
        return int(value) <= max(1, hardware.gpus_per_job)
    return True


def _param_overrides(params) -> list[str]:
    """A block's sweeper params as Hydra's basic sweeper turns them into overrides."""
    return [f"{k}={v}" for k, v in params.items()]


def plan_block(option: str, hardware: str, block: str, head, select, extra: list[str], waves: bool,
               composer: CellComposer | None = None) -> list[Multirun]:
    """The multiruns of one block (one, or one per S with ``waves``), each with its composed and
    validated cells; ``[]`` when the selection leaves no cell."""
    composer = composer or CellComposer()
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = _param_overrides(head.experiment.blocks[block])
    parser = _parser()
    parsed = parser.parse_overrides(params + list(extra))
    last = {o.get_key_element(): o for o in parsed}
    fixed = {"path": head.path.name, "model": head.model.name, "S": str(head.S), "n_gpus": str(head.n_gpus)}
    narrowing, s_values = [], None
    for key in NARROWED_KEYS:
        values = _values(last[key]) if key in last else [fixed[key]]
        kept = [v for v in values if _keep(key, v, select, head.hardware)]
        if not kept:
            return []
        if kept != values:
            narrowing.append(f"{key}={','.join(kept)}")
        if key == "S":
            s_values = kept
    waves_of = [[f"S={s}"] for s in s_values] if waves and len(s_values) > 1 else [[]]
    out = []
    lead = [f"experiment={option}", f"hardware={hardware}", f"block={block}"]
    for wave in waves_of:
        over = list(extra) + narrowing + wave
        batches = BasicSweeper.split_arguments(parser.parse_overrides(params + lead + over), None)[0]
        cells = []
        for job in batches:
            try:
                cfg = composer(job)
            except ConfigError as exc:
                raise ConfigError(f"experiment {option!r}, block {block!r}, cell {' '.join(job)}: {exc}") from None
            cells.append(spec_from_config(cfg, block=block, overrides=job, device=cfg.hardware.device))
        out.append(Multirun(option, block, over, cells, wave=wave[0].split("=", 1)[1] if wave else ""))
    return out


def plan(experiments, hardware: str, select, extra: list[str], waves: bool) -> list[tuple[str, object, list]]:
    """``[(experiment option, its head config, its multiruns)]`` for the experiments to run."""
    out = []
    composer = CellComposer()
    head0 = compose_cell([f"hardware={hardware}", *extra])
    heads = []
    for name in experiments:
        option = experiment_option(name, head0.hardware.experiment_variant)
        heads.append((option, compose_cell([f"experiment={option}", f"hardware={hardware}", *extra])))
    known_blocks = sorted({b for _, head in heads for b in head.experiment.blocks})
    for b in select.blocks or []:
        if b not in known_blocks:
            raise ConfigError(f"select.blocks: unknown block {b!r}; the blocks of {[o for o, _ in heads]}: {known_blocks}")
    for option, head in heads:
        runs = []
        for block in head.experiment.blocks:
            if select.blocks is not None and block not in select.blocks:
                continue
            runs += plan_block(option, hardware, block, head, select, extra, waves, composer)
        out.append((option, head, runs))
    return out


# ----------------------------------------------------------------------------- running

def sweep_dir_of(mr: Multirun, workdir: Path) -> Path:
    """Hydra's sweep folder of a multirun: ``<driver output>/<experiment>/<block>[-S<wave>]``."""
    return workdir / mr.experiment / (mr.block + (f"-S{mr.wave}" if mr.wave else ""))


def multirun_command(mr: Multirun, *, hardware: str, launcher: str, sweep_id: str, workdir: Path,
                     deadline: float | None, hydra_extra: list[str], entry=None) -> list[str]:
    """The command of one multirun; ``entry`` (default: this interpreter running the cell app)."""
    head = entry or [sys.executable, "-m", "streamindex.harness.cell_app"]
    sweep_dir = sweep_dir_of(mr, workdir)
    args = ["--multirun", f"experiment={mr.experiment}", f"hardware={hardware}", f"block={mr.block}",
            f"launcher={launcher}", f"sweep.id={sweep_id}", f"sweep.workdir={workdir}",
            f"hydra.sweep.dir={sweep_dir}", *hydra_extra, *mr.overrides]
    if deadline is not None:
        args.append(f"sweep.deadline={deadline:.3f}")
    return head + args


class _Progress:
    """Counts outcomes from the jobs' events and drives one tqdm bar per experiment."""

    def __init__(self, workdir: Path):
        self.reader = events.EventReader(workdir)
        self.counts: Counter = Counter()
        self.fatal: list[str] = []
        self.ended: Counter = Counter()      # per multirun sweep dir
        self.bar = None

    def pump(self) -> None:
        for ev in self.reader.poll():
            kind = ev.get("event")
            if kind == "start" and self.bar is not None:
                self.bar.set_postfix_str(f"running {ev.get('cell')}", refresh=True)
            elif kind == "end":
                status = ev.get("status")
                self.counts[status] += 1
                self.ended[ev.get("multirun")] += 1
                if self.bar is not None:
                    self.bar.update(1)
                    if status not in ("ok", "already_done"):
                        self.bar.write(f"[{status}] {ev.get('cell')}: {ev.get('reason', '')}")
            elif kind == "fatal":
                self.fatal.append(ev.get("reason", ""))


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in lines[-n:])


def _start(cmd, log_fh, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                            preexec_fn=lambda: die_with_parent(signal.SIGTERM))


def multirun_env(triton_interpret: bool) -> dict:
    """The multirun's environment: the driver's, with the Triton interpreter switched on from the
    start for an interpreter profile (Triton picks interpreted or compiled kernels when the
    library is imported, so the jobs can then fork their cells instead of spawning them)."""
    env = dict(os.environ)
    if triton_interpret:
        env["TRITON_INTERPRET"] = "1"
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the multirun's process group (its jobs kill their cells), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


@dataclass
class _Active:
    mr: Multirun
    proc: subprocess.Popen
    log: Path
    fh: object
    rest: list                 # the block's later waves, started in this slot when this one ends


class _Execution:
    """Starts the multiruns of an experiment, up to ``concurrency`` blocks at a time (a block's
    waves one after the other, smallest S first); stops starting new ones once ``max_minutes``
    is spent or a job reports a fatal error; records which multiruns failed."""

    def __init__(self, *, progress: _Progress, command_of, workdir: Path, deadline, concurrency: int, env: dict):
        self.progress, self.command_of, self.workdir, self.env = progress, command_of, workdir, env
        self.deadline, self.concurrency = deadline, max(1, int(concurrency))
        self.active: list[_Active] = []
        self.failed: list[str] = []
        self.stopped_by_budget = False

    def _launch(self, chain: list) -> None:
        mr, rest = chain[0], chain[1:]
        if self.progress.fatal:
            return
        if self.stopped_by_budget or (self.deadline is not None and time.time() >= self.deadline):
            self.stopped_by_budget = True
            for m in chain:
                self.progress.counts["not_run"] += len(m.cells)
                if self.progress.bar is not None:
                    self.progress.bar.update(len(m.cells))
            return
        sweep_dir = sweep_dir_of(mr, self.workdir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log = sweep_dir / "multirun.log"
        fh = open(log, "w")
        self.active.append(_Active(mr, _start(self.command_of(mr), fh, self.env), log, fh, rest))

    def _finished(self, a: _Active) -> None:
        a.fh.close()
        self.progress.pump()
        rc = a.proc.returncode
        ended = self.progress.ended.get(str(sweep_dir_of(a.mr, self.workdir)), 0)
        if self.progress.counts.get("not_run"):
            self.stopped_by_budget = True
        if rc != 0 and ended < len(a.mr.cells):
            self.failed.append(a.mr.name)
            self.progress.counts["not_run"] += len(a.mr.cells) - ended
            if self.progress.bar is not None:
                self.progress.bar.update(len(a.mr.cells) - ended)
                self.progress.bar.write(f"[multirun failed] {a.mr.name} (exit {rc}); the end of {a.log}:\n"
                                        f"{_tail(a.log)}")

    def run(self, runs: list) -> None:
        chains: list[list] = []
        for mr in runs:                       # consecutive multiruns of one block are its waves
            if chains and chains[-1][0].block == mr.block and chains[-1][0].experiment == mr.experiment:
                chains[-1].append(mr)
            else:
                chains.append([mr])
        while chains or self.active:
            while chains and len(self.active) < self.concurrency and not self.progress.fatal:
                self._launch(chains.pop(0))
            if self.progress.fatal:
                chains.clear()
            self.progress.pump()
            for a in [a for a in self.active if a.proc.poll() is not None]:
                self.active.remove(a)
                self._finished(a)
                if a.rest:
                    self._launch(a.rest)
            if self.progress.fatal:
                self.stop_all()
            time.sleep(0.2)

    def stop_all(self) -> None:
        for a in self.active:
            _stop(a.proc)
            a.fh.close()
        self.active.clear()


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(cfg: DictConfig, task_overrides: list[str], hydra_overrides: list[str]) -> int:
    from .config import validate_driver

    try:
        validate_driver(cfg)
    except ConfigError as exc:
        fail(str(exc))
    choice = resolve_hardware(cfg.hardware.name)
    print(choice.message, flush=True)
    hw_name = choice.name
    extra = forwarded(task_overrides)
    hydra_extra = forwarded_hydra(hydra_overrides)
    launcher = HydraConfig.get().runtime.choices.get("launcher", "basic")
    try:
        head = compose_cell([f"hardware={hw_name}", *extra])
        experiments = plan(cfg.experiments, hw_name, cfg.select, extra, bool(cfg.launch.waves))
    except ConfigError as exc:
        fail(str(exc))
    total = sum(len(mr.cells) for _, _, runs in experiments for mr in runs)
    if total == 0:
        sel = {k: v for k, v in dict(cfg.select).items() if v is not None}
        fail(f"the selection matches no cell of experiments {list(cfg.experiments)} on hardware {hw_name} "
             f"(select: {sel or 'none'}, hardware.S_max: {head.hardware.S_max})")
    for option, exp_head, runs in experiments:
        n = sum(len(mr.cells) for mr in runs)
        budget = exp_head.experiment.budget_minutes
        print(f"  {option}: {n} cells in {len(runs)} multirun{'s' if len(runs) != 1 else ''} (launcher {launcher})"
              + (f"; stated budget on this hardware: {budget:g} min" if budget else ""), flush=True)
    workdir = Path(HydraConfig.get().runtime.output_dir).resolve()
    if cfg.dry_run:
        for _, _, runs in experiments:
            for mr in runs:
                cmd = multirun_command(mr, hardware=hw_name, launcher=launcher, sweep_id="<id>", workdir=workdir,
                                       deadline=None, hydra_extra=hydra_extra, entry=entry_command())
                print(f"# {mr.name}: {len(mr.cells)} cells\n{' '.join(shlex.quote(c) for c in cmd)}")
                for spec in mr.cells:
                    print(f"  {spec.command}")
        return 0

    _check_results_dir(cfg.results_dir, hw_name)
    if head.hardware.require_gpu and launcher in ("basic", "submitit_local"):
        _check_gpu(hw_name, head.hardware.require_gpu)
    from .provenance import now_iso

    sweep_id = now_iso()
    deadline = None if cfg.max_minutes is None else time.time() + 60.0 * cfg.max_minutes

    def command_of(mr):
        return multirun_command(mr, hardware=hw_name, launcher=launcher, sweep_id=sweep_id, workdir=workdir,
                                deadline=deadline, hydra_extra=hydra_extra)

    progress = _Progress(workdir)
    execution = _Execution(progress=progress, command_of=command_of, workdir=workdir, deadline=deadline,
                           concurrency=head.hardware.concurrent_blocks,
                           env=multirun_env(head.hardware.triton_interpret))
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    from tqdm import tqdm

    tqdm.monitor_interval = 0
    try:
        for option, exp_head, runs in experiments:
            t_exp = time.time()
            progress.bar = tqdm(total=sum(len(mr.cells) for mr in runs), desc=option, unit="cell", file=sys.stderr,
                                dynamic_ncols=True)
            execution.run(runs)
            progress.bar.close()
            if progress.fatal:
                fail(progress.fatal[0], code=3)
            budget = exp_head.experiment.budget_minutes
            took = time.time() - t_exp
            print(f"  {option}: {took:.0f} s" + (f" (stated budget {budget:g} min)" if budget else ""), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        execution.stop_all()
        progress.pump()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if progress.bar is not None:
            progress.bar.close()
    if interrupted:
        recorded = sum(v for k, v in progress.counts.items() if k in ("ok", "oom", "error", "skipped"))
        print(f"\ninterrupted: {recorded} cells recorded in this run; rerun the same command to resume "
              "(recorded cells are skipped)", file=sys.stderr, flush=True)
        return 130

    _print_bench(experiments, cfg.results_dir, hw_name)
    if cfg.report:
        _report(cfg.results_dir, hw_name, cfg.mirror_dir)
    failed = execution.failed
    line = events.summary_line(progress.counts, stopped_by_budget=execution.stopped_by_budget)
    if failed:
        line += f"; {len(failed)} multirun{'s' if len(failed) != 1 else ''} failed ({', '.join(failed)})"
    print(f"sweep: {line}", flush=True)
    return 1 if progress.counts.get("error") or failed else 0


def _check_results_dir(results_dir, hardware: str) -> None:
    from . import results

    try:
        results.check_writable(results_dir, hardware)
    except OSError as exc:
        fail(str(exc))


def _check_gpu(hardware: str, require_gpu: str) -> None:
    from .provenance import detect_cuda_gpu

    gpu = detect_cuda_gpu() or ""
    if require_gpu not in gpu:
        fail(f"hardware profile {hardware!r} records only results measured on a GPU whose name contains "
             f"{require_gpu!r}, but this machine has {gpu or 'no CUDA GPU'!r}. Use another profile (e.g. "
             f"hardware={hardware} hardware.name=<yours> hardware.require_gpu=null) so that its rows go to their "
             "own results folder.", code=3)


def _print_bench(experiments, results_dir, hardware: str) -> None:
    names = {option for option, _, runs in experiments if option.startswith("bench") and runs}
    if not names:
        return
    from .results import load_results
    from .tables import bench_table

    tabs = load_results(results_dir, hardware)
    for name in sorted({n.replace("_smoke", "") for n in names}):
        if name in tabs:
            print(f"\n## {name} ({hardware})\n\n{bench_table(tabs[name])}\n", flush=True)


def _report(results_dir, hardware: str, mirror_dir) -> None:
    from .report import build_report

    targets = [hardware] + (["h200"] if hardware != "h200" else [])
    for name in targets:
        out = build_report(results_dir, name)
        if out is not None:
            print(f"report: {out}", flush=True)
        elif name == "h200":
            print("report: no stored results/h200/ tables to regenerate from", flush=True)
    if mirror_dir:
        _mirror_report(results_dir, hardware, mirror_dir)


def _mirror_report(results_dir, hardware, mirror_dir) -> None:
    import shutil

    src = Path(results_dir) / hardware
    dst = Path(mirror_dir) / hardware
    for p in list(src.glob("*.md")) + list((src / "figures").glob("*.png")):
        target = dst / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)


def _task(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    code = run(cfg, list(hc.overrides.task), list(hc.overrides.hydra))
    if code:
        raise SystemExit(code)


_hydra_main = hydra.main(version_base="1.3", config_path=config_search_path(), config_name="config")(_task)


def main() -> None:
    """``streamindex-reproduce`` / ``python -m experiments.reproduce``."""
    check_launcher(launcher_from_argv(sys.argv[1:]))
    if "--multirun" in sys.argv[1:] or "-m" in sys.argv[1:]:
        fail("the reproduce driver starts its own multiruns; run it without --multirun")
    try:
        _hydra_main()
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume (recorded cells are skipped)",
              file=sys.stderr, flush=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
