"""The driver: ``python -m experiments.reproduce hardware=auto|h200|cpu_smoke experiments=[...]``.

Runs the paper's experiments (default ``[scaling, recall, design_space]``; ``[bench]`` for the
speed table, ``[e2e]`` for the CSA step), every cell in its own process, rows appended to
``results/<hardware>/<experiment>.csv``; then regenerates figures and ``REPORT.md``.

* ``hardware=auto``: the h200 profile when a CUDA GPU is present; otherwise it says plainly that
  there is no GPU, runs the cpu_smoke profile end to end (``*_smoke`` experiment variants, into
  ``results/cpu_smoke/``) and regenerates figures and report from the stored ``results/h200/``.
* ``max_minutes=8``: stop cleanly between cells after 8 minutes; the same command resumes.
* ``select.paths=[stream] select.models=[v4_flash] select.S_max=262144 select.blocks=[...]``:
  run part of a sweep. ``dry_run=true`` lists the cells and their commands.
* ``mirror_dir=$OUT``: copy each table there after every row (device machine).
Every cell config is composed and validated before the first cell runs.
"""
from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from streamindex.harness.config import ConfigError, register_configs

from ._compose import experiment_cells, experiment_option, fail, forwarded, resolve_hardware

register_configs()


def run(cfg: DictConfig, task_overrides: list[str]) -> int:
    from streamindex.harness.runner import HardwareMismatch, Sweep, SweepSummary

    choice = resolve_hardware(cfg.hardware.name)
    print(choice.message, flush=True)
    extra = forwarded(task_overrides)
    try:
        head = experiment_cells_head(choice.name, extra)
        plan = []
        for name in cfg.experiments:
            option = experiment_option(name, head.hardware.experiment_variant)
            plan.append((option, experiment_cells(option, choice.name, cfg.select, extra)))
    except ConfigError as exc:
        fail(str(exc))
    total = sum(len(c) for _, c in plan)
    for option, cells in plan:
        budget = _budget(option, choice.name, extra)
        print(f"  {option}: {len(cells)} cells" + (f" (stated budget on this hardware: {budget:g} min)" if budget else ""))
    if cfg.dry_run:
        for _, cells in plan:
            for spec in cells:
                print(spec.command)
        return 0

    hw = head.hardware
    summary = SweepSummary()
    if total:
        sweep = Sweep(results_dir=cfg.results_dir, hardware_name=hw.name, device=hw.device,
                      require_gpu=hw.require_gpu, matmul_n=hw.matmul_n, triton_interpret=hw.triton_interpret,
                      start_method=hw.start_method, mirror_dir=cfg.mirror_dir, max_minutes=cfg.max_minutes)
        try:
            for option, cells in plan:
                sweep.run(cells, label=option, summary=summary)
                if summary.stopped_by_budget:
                    break
        except HardwareMismatch as exc:
            fail(str(exc))
        print(f"sweep: {summary.line()}", flush=True)

    if any(o.startswith("bench") for o, _ in plan):
        from streamindex.harness.results import load_results
        from streamindex.harness.tables import bench_table

        tabs = load_results(cfg.results_dir, hw.name)
        names = {spec.experiment for option, cells in plan if option.startswith("bench") for spec in cells}
        for name in sorted(names):
            if name in tabs:
                print(f"\n## {name} ({hw.name})\n\n{bench_table(tabs[name])}\n", flush=True)

    if cfg.report:
        from streamindex.harness.report import build_report

        targets = [hw.name] + (["h200"] if hw.name != "h200" else [])
        for name in targets:
            out = build_report(cfg.results_dir, name)
            if out is not None:
                print(f"report: {out}")
            elif name == "h200":
                print("report: no stored results/h200/ tables to regenerate from")
        if cfg.mirror_dir and hw.name in targets:
            _mirror_report(cfg.results_dir, hw.name, cfg.mirror_dir)
    return 0


def experiment_cells_head(hardware: str, extra: list[str]):
    from ._compose import compose_cell

    return compose_cell([f"hardware={hardware}", *extra])


def _budget(option: str, hardware: str, extra: list[str]):
    from ._compose import compose_cell

    return compose_cell([f"experiment={option}", f"hardware={hardware}", *extra]).experiment.budget_minutes


def _mirror_report(results_dir, hardware, mirror_dir):
    import shutil
    from pathlib import Path

    src = Path(results_dir) / hardware
    dst = Path(mirror_dir) / hardware
    for p in list(src.glob("*.md")) + list((src / "figures").glob("*.png")):
        target = dst / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig):
    code = run(cfg, list(HydraConfig.get().overrides.task))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
