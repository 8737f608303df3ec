"""Hydra composition shared by the entry points: resolving ``hardware=auto``, composing and
validating one cell's config, and expanding an experiment into cell specs — all before any
GPU work, so that a bad key or value fails first."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from hydra import compose
from omegaconf import DictConfig

from streamindex.harness.cellspec import CellSpec, spec_from_config
from streamindex.harness.config import ConfigError, known_experiments, validate_config
from streamindex.harness.provenance import detect_cuda_gpu
from streamindex.harness.sweep import expand_experiment, selected

#: Keys only the driver reads; not forwarded to the cells (nor into their commands).
DRIVER_KEYS = ("experiments", "max_minutes", "report", "dry_run", "select", "mirror_dir",
               "results_dir", "hardware", "experiment", "hydra", "launcher")


@dataclass
class HardwareChoice:
    name: str
    message: str


def resolve_hardware(requested: str) -> HardwareChoice:
    """``auto`` → ``h200`` when a CUDA GPU is present, else ``cpu_smoke`` (said plainly)."""
    if requested != "auto":
        return HardwareChoice(requested, f"hardware profile: {requested}")
    gpu = detect_cuda_gpu()
    if gpu:
        return HardwareChoice("h200", f"CUDA GPU found ({gpu}): using the h200 profile")
    return HardwareChoice("cpu_smoke", "No CUDA GPU on this machine: running the cpu_smoke profile "
                          "(Triton interpreter, tiny S) end to end; its rows go to results/cpu_smoke/ "
                          "and say nothing about GPU speed. The figures and report of the stored "
                          "H200 results (results/h200/) are regenerated afterwards.")


def forwarded(task_overrides) -> list[str]:
    """The user's overrides that apply to every cell (driver-only keys removed)."""
    out = []
    for o in task_overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.split(".", 1)[0] not in DRIVER_KEYS:
            out.append(o)
    return out


def compose_cell(overrides: list[str]) -> DictConfig:
    cfg = compose(config_name="config", overrides=list(overrides))
    validate_config(cfg)
    return cfg


def experiment_option(name: str, variant: str | None) -> str:
    """``scaling`` → ``scaling_smoke`` under a profile with ``experiment_variant: smoke``."""
    if variant and f"{name}_{variant}" in known_experiments():
        return f"{name}_{variant}"
    return name


def experiment_cells(name: str, hardware: str, select, extra: list[str]) -> list[CellSpec]:
    """Compose and validate every cell of experiment ``name`` under ``hardware``."""
    head = compose_cell([f"experiment={name}", f"hardware={hardware}", *extra])
    device = head.hardware.device
    s_cap = head.hardware.S_max
    specs = []
    for cell in expand_experiment(head.experiment.sweeps):
        ov = [f"experiment={name}", f"hardware={hardware}", *cell.overrides, *extra]
        try:
            cfg = compose_cell(ov)
        except ConfigError as exc:
            raise ConfigError(f"experiment {name!r}, block {cell.block!r}, cell {' '.join(cell.overrides)}: {exc}") from None
        if not selected(cfg, select) or (s_cap is not None and cfg.S > s_cap):
            continue
        if select.blocks is not None and cell.block not in select.blocks:
            continue
        specs.append(spec_from_config(cfg, block=cell.block, overrides=ov, device=device))
    return specs


def fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)
