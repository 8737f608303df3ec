"""Structured-config schema of the harness (registered in Hydra's ConfigStore as ``base_config``).

``conf/config.yaml`` lists ``base_config`` first in its defaults, so every YAML file and every
command-line override is merged into these typed dataclasses: a misspelt key ("Key 'topkk' not
in 'ModelConf'") or a value of the wrong type fails at composition. :func:`validate_config`
then checks the values (positive sizes, known path names, ...) and raises :class:`ConfigError`
naming the key, the bad value and what is expected — all before any GPU work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

KNOWN_DTYPES = ("bf16", "fp16", "fp32")
DEVICES = ("cuda", "cpu", "auto")
KINDS = ("indexer", "csa")
FAIL_INJECTIONS = ("error", "oom", "crash", "hang")
ATTN_IMPLS = ("tilelang", "triton")
START_METHODS = ("fork", "spawn")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class ConfigError(ValueError):
    """A harness configuration value is out of range or unknown (raised before any GPU work)."""


@dataclass
class ModelConf:
    name: str = "custom"
    H: int = 64
    D: int = 128
    topk: int = 512
    ratio: int = 4
    attn_heads: int = 64
    head_dim: int = 512
    rope_dim: int = 64
    window: int = 128


@dataclass
class PathConf:
    name: str = "stream"
    chunk_q: Optional[int] = None
    chunk_t: Optional[int] = None
    workspace_bytes: Optional[int] = None
    attn_impl: Optional[str] = None


@dataclass
class HardwareConf:
    name: str = "auto"
    device: str = "auto"
    require_gpu: Optional[str] = None
    triton_interpret: bool = False
    dtype: str = "bf16"
    warmup: int = 1
    repeats: int = 5
    time_budget_s: float = 8.0
    fast_call_s: float = 0.05
    bench_ms: int = 300
    proxy_warmup_above_S: Optional[int] = None
    proxy_warmup_S: int = 65536
    cell_timeout_s: float = 420.0
    skip_predicted_call_s: Optional[float] = None
    S_max: Optional[int] = None
    experiment_variant: Optional[str] = None
    matmul_n: int = 8192
    start_method: str = "fork"


@dataclass
class MeasureConf:
    time: bool = True
    memory: bool = True
    recall: bool = False
    overlap: bool = False
    recall_rows: int = 256
    tol_factor: float = 1e-5


@dataclass
class SweepBlock:
    """One block of an experiment: the cartesian product of ``grid`` (Hydra override key →
    list of values), each cell also getting the fixed ``overrides``."""
    name: str = "main"
    grid: Dict[str, Any] = field(default_factory=dict)
    overrides: List[str] = field(default_factory=list)


@dataclass
class ExperimentConf:
    name: str = "adhoc"
    kind: str = "indexer"
    description: str = ""
    budget_minutes: Optional[float] = None
    sweeps: List[SweepBlock] = field(default_factory=list)


@dataclass
class SelectConf:
    """Narrow a reproduce run (e.g. to split it over several device calls)."""
    paths: Optional[List[str]] = None
    models: Optional[List[str]] = None
    blocks: Optional[List[str]] = None
    S_min: Optional[int] = None
    S_max: Optional[int] = None


@dataclass
class RootConf:
    model: ModelConf = field(default_factory=ModelConf)
    path: PathConf = field(default_factory=PathConf)
    hardware: HardwareConf = field(default_factory=HardwareConf)
    experiment: ExperimentConf = field(default_factory=ExperimentConf)
    measure: MeasureConf = field(default_factory=MeasureConf)
    select: SelectConf = field(default_factory=SelectConf)
    S: int = 4096
    B: int = 1
    offset: int = 0
    seed: int = 0
    dtype: Optional[str] = None
    results_dir: str = "results"
    mirror_dir: Optional[str] = None
    experiments: List[str] = field(default_factory=lambda: ["scaling", "recall", "design_space"])
    max_minutes: Optional[float] = None
    report: bool = True
    dry_run: bool = False
    fail_inject: Optional[str] = None


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=RootConf)


def known_paths() -> list[str]:
    """Path names that have a config in ``conf/path/`` (the library's paths plus ``csa``)."""
    return sorted(p.stem for p in (CONF_DIR / "path").glob("*.yaml"))


def known_experiments() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def validate_config(cfg) -> None:
    """Raise :class:`ConfigError` for the first out-of-range or unknown value in a composed cell
    config (the schema already checked keys and types)."""
    def positive(name, value, allow_none=False):
        if value is None and allow_none:
            return
        if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer{' or null' if allow_none else ''}, "
                              f"got {value!r}")

    positive("S", cfg.S)
    positive("B", cfg.B)
    if cfg.offset < 0:
        raise ConfigError(f"offset must be >= 0, got {cfg.offset!r}")
    for key in ("H", "D", "topk", "ratio", "attn_heads", "head_dim", "window"):
        positive(f"model.{key}", cfg.model[key])
    for key in ("chunk_q", "chunk_t", "workspace_bytes"):
        positive(f"path.{key}", cfg.path[key], allow_none=True)
    paths = known_paths()
    if cfg.path.name not in paths:
        raise ConfigError(f"path.name must be one of {paths}, got {cfg.path.name!r}")
    if cfg.experiment.kind not in KINDS:
        raise ConfigError(f"experiment.kind must be one of {list(KINDS)}, got {cfg.experiment.kind!r}")
    if (cfg.experiment.kind == "csa") != (cfg.path.name == "csa"):
        raise ConfigError(f"experiment.kind={cfg.experiment.kind!r} does not go with path={cfg.path.name!r} "
                          "(kind csa runs exactly the path `csa`)")
    if cfg.path.name == "csa" and cfg.path.attn_impl not in ATTN_IMPLS:
        raise ConfigError(f"path.attn_impl must be one of {list(ATTN_IMPLS)} for path csa, got {cfg.path.attn_impl!r}")
    if cfg.hardware.device not in DEVICES:
        raise ConfigError(f"hardware.device must be one of {list(DEVICES)}, got {cfg.hardware.device!r}")
    if cfg.hardware.start_method not in START_METHODS:
        raise ConfigError(f"hardware.start_method must be one of {list(START_METHODS)}, got {cfg.hardware.start_method!r}")
    dtype = cfg.dtype or cfg.hardware.dtype
    if dtype not in KNOWN_DTYPES:
        raise ConfigError(f"dtype must be one of {list(KNOWN_DTYPES)} (fp8 is the path stream_fp8), got {dtype!r}")
    for key in ("warmup",):
        if cfg.hardware[key] < 0:
            raise ConfigError(f"hardware.{key} must be >= 0, got {cfg.hardware[key]!r}")
    positive("hardware.repeats", cfg.hardware.repeats)
    positive("hardware.proxy_warmup_S", cfg.hardware.proxy_warmup_S)
    positive("hardware.matmul_n", cfg.hardware.matmul_n)
    if cfg.hardware.cell_timeout_s <= 0:
        raise ConfigError(f"hardware.cell_timeout_s must be > 0, got {cfg.hardware.cell_timeout_s!r}")
    positive("measure.recall_rows", cfg.measure.recall_rows)
    if cfg.fail_inject is not None and cfg.fail_inject not in FAIL_INJECTIONS:
        raise ConfigError(f"fail_inject must be null or one of {list(FAIL_INJECTIONS)}, got {cfg.fail_inject!r}")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise ConfigError(f"max_minutes must be > 0 or null, got {cfg.max_minutes!r}")
    known = known_experiments()
    for name in cfg.experiments:
        if name not in known:
            raise ConfigError(f"experiments: unknown experiment {name!r}; known: {known}")
    for block in cfg.experiment.sweeps:
        for key, values in block.grid.items():
            if not isinstance(values, (list, tuple)) and not _is_listconfig(values) or len(values) == 0:
                raise ConfigError(f"experiment {cfg.experiment.name!r} block {block.name!r}: grid.{key} "
                                  f"must be a non-empty list, got {values!r}")


def _is_listconfig(x) -> bool:
    from omegaconf import ListConfig

    return isinstance(x, ListConfig)
