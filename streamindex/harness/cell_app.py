"""The cell entry point: one Hydra job = one sweep cell.

``streamindex-cell path=stream model=v4_flash S=32768`` (``python -m experiments.cell`` in a
checkout) composes the config (typed and validated before any work), measures the cell in its
own process group and appends its row to ``results/<hardware>/<experiment>.csv`` (``adhoc.csv``
without an experiment) — unless the cell is already recorded with status ok / oom. It prints one
line: the outcome, the time (or the reason) and the table it wrote to; it exits 1 when the cell
errored.

``--multirun`` sweeps cells through the selected Hydra launcher (``launcher=basic``,
``submitit_local``, ``submitit_slurm``, ``ray``); ``experiment=NAME block=BLOCK`` sweeps one block
of an experiment (its ``hydra.sweeper.params``). The :class:`callbacks.SweepSummary` callback
prints the multirun's summary and makes it exit 1 when any cell errored. The reproduce driver
starts exactly these multiruns.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .compose import check_launcher, compose_cell, fail, launcher_from_argv, resolve_hardware
from .config import ConfigError, config_search_path, register_configs, validate_config

register_configs()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _context(cfg, hc, multirun: bool):
    from .provenance import now_iso
    from .runner import JobContext

    if cfg.sweep.workdir:
        workdir = Path(cfg.sweep.workdir)
    else:
        workdir = Path(hc.sweep.dir if multirun else hc.runtime.output_dir)
    sweep_id = cfg.sweep.id or (f"multirun {hc.sweep.dir}" if multirun else now_iso())
    launcher = hc.runtime.choices.get("hydra/launcher", "basic") if multirun else "none"
    return JobContext(results_dir=cfg.results_dir, launcher=launcher, start_method=cfg.launch.start_method,
                      workdir=workdir.resolve(), output_dir=Path(hc.runtime.output_dir).resolve(),
                      sweep_id=sweep_id, multirun=str(hc.sweep.dir) if multirun else "",
                      deadline=cfg.sweep.deadline, mirror_dir=cfg.mirror_dir, require_gpu=cfg.hardware.require_gpu,
                      matmul_n=cfg.hardware.matmul_n)


def task(cfg: DictConfig) -> dict:
    """The Hydra task function (picklable by reference, so every launcher can ship it)."""
    from . import results
    from .cellspec import spec_from_config
    from .runner import HardwareMismatch, run_cell_job

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:          # not the main thread (some launchers): the launcher handles signals
        pass
    overrides = list(hc.overrides.task)
    try:
        if cfg.hardware.name == "auto":
            choice = resolve_hardware("auto")
            print(choice.message, flush=True)
            overrides = [o for o in overrides if not o.startswith("hardware=")] + [f"hardware={choice.name}"]
            cfg = compose_cell(overrides)
        validate_config(cfg)
    except ConfigError as exc:
        if multirun:
            raise
        fail(str(exc))
    try:
        results.check_writable(cfg.results_dir, cfg.hardware.name)
    except OSError as exc:
        fail(str(exc))
    block = cfg.block or "cli"
    spec = spec_from_config(cfg, block=block, overrides=overrides, device=cfg.hardware.device)
    ctx = _context(cfg, hc, multirun)
    try:
        outcome = run_cell_job(spec, ctx)
    except HardwareMismatch as exc:
        fail(str(exc), code=3)
    prefix = f"[cell {hc.job.num}] " if multirun else ""
    print(prefix + outcome.message(), flush=True)
    if not multirun and outcome.status == "error":
        raise SystemExit(1)
    return outcome.as_dict()


_hydra_main = hydra.main(version_base="1.3", config_path=config_search_path(), config_name="config")(task)


def main() -> None:
    """``streamindex-cell`` / ``python -m experiments.cell``: Hydra's own command line, plus a
    clear message for a launcher whose plugin is missing and one line on Ctrl-C."""
    check_launcher(launcher_from_argv(sys.argv[1:]))
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _hydra_main()
    except KeyboardInterrupt:
        print("\ninterrupted: the cell that was running is not recorded; rerun the same command to resume "
              "(recorded cells are skipped)", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
