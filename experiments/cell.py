"""One job = one sweep cell: ``python -m experiments.cell path=stream model=v4_flash S=32768``.

Composes the config (typed and validated before any GPU work), measures the cell in its own
child process and appends its row to ``results/<hardware>/<experiment>.csv`` — unless the cell
is already recorded with status ok / oom. ``--multirun`` sweeps many cells, e.g.::

    python -m experiments.cell --multirun experiment=scaling hardware=h200 \\
        path=stream,partition_merge S=32768,65536

(the basic launcher runs the jobs one after the other; ``launcher=submitit_slurm`` or
``launcher=ray`` spread them over a cluster, one GPU per job).
"""
from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from streamindex.harness.config import ConfigError, register_configs, validate_config

from ._compose import compose_cell, fail, resolve_hardware

register_configs()


def run(cfg: DictConfig, task_overrides: list[str]) -> dict | None:
    from streamindex.harness.cellspec import spec_from_config
    from streamindex.harness.runner import HardwareMismatch, Sweep

    overrides = list(task_overrides)
    if cfg.hardware.name == "auto":
        choice = resolve_hardware("auto")
        print(choice.message)
        overrides = [o for o in overrides if not o.startswith("hardware=")] + [f"hardware={choice.name}"]
        cfg = compose_cell(overrides)
    try:
        validate_config(cfg)
    except ConfigError as exc:
        fail(str(exc))
    spec = spec_from_config(cfg, block="cli", overrides=overrides, device=cfg.hardware.device)
    sweep = Sweep(results_dir=cfg.results_dir, hardware_name=cfg.hardware.name, device=spec.device,
                  require_gpu=cfg.hardware.require_gpu, matmul_n=cfg.hardware.matmul_n,
                  triton_interpret=cfg.hardware.triton_interpret, start_method=cfg.hardware.start_method,
                  mirror_dir=cfg.mirror_dir, progress=False)
    try:
        summary = sweep.run([spec], label=spec.experiment)
    except HardwareMismatch as exc:
        fail(str(exc))
    print(f"[cell] {spec.command}: {summary.line()}")
    return summary.counts


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig):
    return run(cfg, list(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    main()
