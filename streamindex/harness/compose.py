"""Hydra composition shared by the entry points: resolving ``hardware=auto``, composing and
validating a cell's config, splitting the user's overrides, and checking that a launcher's
plugin is installed — all before any work, so that a bad key or value fails first."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from omegaconf import DictConfig

from .config import CONF_DIR, validate_config

#: Keys only the reproduce driver reads; not forwarded to the cells.
DRIVER_KEYS = ("experiments", "max_minutes", "report", "dry_run", "select", "hardware", "experiment",
               "launcher", "block", "sweep")
#: ``hydra.*`` overrides the driver forwards to the multiruns it starts (the others, e.g.
#: ``hydra.run.dir``, are the driver's own).
FORWARDED_HYDRA = ("hydra.launcher", "hydra.sweeper.max_batch_size")

#: The Hydra plugin each launcher option needs, and the extra that installs it.
LAUNCHER_PLUGINS = {
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


@dataclass
class HardwareChoice:
    name: str
    message: str


def resolve_hardware(requested: str) -> HardwareChoice:
    """``auto`` → ``h200`` when a CUDA GPU is present, else ``cpu_smoke`` (said plainly)."""
    from .provenance import detect_cuda_gpu

    if requested != "auto":
        return HardwareChoice(requested, f"hardware profile: {requested}")
    gpu = detect_cuda_gpu()
    if gpu:
        return HardwareChoice("h200", f"CUDA GPU found ({gpu}): using the h200 profile")
    return HardwareChoice("cpu_smoke", "No CUDA GPU on this machine: running the cpu_smoke profile "
                          "(Triton interpreter, tiny S) end to end; its rows go to results/cpu_smoke/ "
                          "and say nothing about GPU speed.")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def forwarded(task_overrides) -> list[str]:
    """The user's overrides that apply to every cell (driver-only keys removed)."""
    out = []
    for o in task_overrides:
        key = override_key(o)
        if key.split(".", 1)[0] not in DRIVER_KEYS and key.split(".", 1)[0] != "hydra":
            out.append(o)
    return out


def forwarded_hydra(hydra_overrides) -> list[str]:
    """The user's ``hydra.launcher.*`` / ``hydra.sweeper.max_batch_size`` overrides."""
    return [o for o in hydra_overrides if override_key(o).startswith(FORWARDED_HYDRA)]


def compose_cell(overrides: list[str]) -> DictConfig:
    """Compose (under an initialised Hydra) and validate a config."""
    from hydra import compose

    cfg = compose(config_name="config", overrides=list(overrides))
    validate_config(cfg)
    return cfg


def experiment_option(name: str, variant: str | None) -> str:
    """``scaling`` → ``scaling_smoke`` under a profile with ``experiment_variant: smoke``."""
    from .config import known_experiments

    if variant and not name.endswith(f"_{variant}") and f"{name}_{variant}" in known_experiments():
        return f"{name}_{variant}"
    return name


def launcher_from_argv(argv) -> str | None:
    for a in argv:
        if override_key(a) == "launcher" and "=" in a:
            return a.split("=", 1)[1]
    return None


def check_launcher(name: str | None) -> None:
    """Exit with a clear message when ``launcher=name`` is unknown or its plugin is missing
    (before Hydra fails with "Could not find 'hydra/launcher/...'")."""
    if name is None:
        return
    known = sorted(p.stem for p in (CONF_DIR / "launcher").glob("*.yaml"))
    if name not in known:
        fail(f"launcher={name} is not a launcher config; known: {known}")
    plugin = LAUNCHER_PLUGINS.get(name)
    if plugin and importlib.util.find_spec(plugin[0]) is None:
        fail(f"launcher={name} needs the Hydra plugin {plugin[0].split('.')[-1].replace('_', '-')}: "
             f"pip install \"streamindex[{plugin[1]}]\" (or pip install -e \".[{plugin[1]}]\" in a checkout)")


def fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class CellComposer:
    """Composes the configs of many cells fast: Hydra composes each distinct combination of
    config-group choices (``model=``, ``path=``, ``experiment=``, ...) once; a cell's plain
    ``key=value`` overrides are then applied to a copy with ``OmegaConf.update`` under the
    schema's struct and type checks — what Hydra does with them after the defaults list. Any
    other override form (``+key``, ``~key``, ``++key``, a sweep) is composed by Hydra in full.
    Every result is validated (:func:`validate_config`)."""

    def __init__(self):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.parser = OverridesParser.create()
        self.groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")}
        self.cache: dict = {}

    def __call__(self, overrides) -> DictConfig:
        import copy

        from hydra import compose
        from hydra.core.override_parser.types import OverrideType
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from .config import ConfigError

        overrides = list(overrides)
        parsed = self.parser.parse_overrides(overrides)
        plain = all(o.type == OverrideType.CHANGE and not o.is_sweep_override() and o.package is None
                    for o in parsed)
        if not plain:
            return compose_cell(overrides)
        group_ov = [s for s, o in zip(overrides, parsed) if o.key_or_group in self.groups]
        value_ov = [o for o in parsed if o.key_or_group not in self.groups]
        key = tuple(group_ov)
        if key not in self.cache:
            self.cache[key] = compose(config_name="config", overrides=group_ov)
        cfg = copy.deepcopy(self.cache[key])
        for o in value_ov:
            try:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"{o.input_line}: {str(exc).splitlines()[0]}") from None
        validate_config(cfg)
        return cfg
