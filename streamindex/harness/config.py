"""Structured-config schema of the harness (registered in Hydra's ConfigStore as ``base_config``).

``conf/config.yaml`` lists ``base_config`` first in its defaults, so every YAML file and every
command-line override is merged into these typed dataclasses: a misspelt key ("Key 'topkk' not
in 'ModelConf'") or a value of the wrong type fails at composition. :func:`validate_config`
then checks the values (positive sizes, known names, ranges) and raises :class:`ConfigError`
naming the key, the bad value and what is expected — all before any work.

The configs themselves (``conf/``) live at the repository's top level and ship inside the wheel
as ``streamindex/harness/conf``; :data:`CONF_DIR` is whichever of the two exists and
:func:`config_search_path` is what the entry points hand to ``hydra.main``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

KNOWN_DTYPES = ("bf16", "fp16", "fp32")
DEVICES = ("cuda", "cpu", "auto")
KINDS = ("indexer", "csa")
FAIL_INJECTIONS = ("error", "oom", "crash", "hang")
ATTN_IMPLS = ("tilelang", "triton")
START_METHODS = ("fork", "spawn")
#: Input distributions (``streamindex.make_inputs(kind=...)``).
INPUT_KINDS = ("random", "ties8", "recency")

_PACKAGED_CONF = Path(__file__).resolve().parent / "conf"        # inside an installed wheel
_SOURCE_CONF = Path(__file__).resolve().parents[2] / "conf"        # a source checkout
CONF_DIR = _PACKAGED_CONF if (_PACKAGED_CONF / "config.yaml").exists() else _SOURCE_CONF


def config_search_path() -> str:
    """The ``config_path`` for ``hydra.main``: the package data (``pkg://``, the same on every
    node of a cluster) in an installed wheel, else the checkout's ``conf/`` as an absolute path."""
    if CONF_DIR == _PACKAGED_CONF:
        return "pkg://streamindex.harness.conf"
    return str(CONF_DIR)


class ConfigError(ValueError):
    """A harness configuration value is out of range or unknown (raised before any work)."""


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
    #: GPUs one launched cell job reserves (Ray ``num_gpus``, SLURM ``gpus_per_node``); a cell's
    #: ``n_gpus`` may not exceed it. 0 on a CPU profile.
    gpus_per_job: int = 0
    #: blocks of an experiment the reproduce driver runs at the same time: 1 wherever times
    #: matter (concurrent cells would share the device); more on a CPU profile, whose
    #: interpreter timings are not speeds anyway
    concurrent_blocks: int = 1


@dataclass
class MeasureConf:
    time: bool = True
    #: also time the default call (``check_finite=True``) beside the unchecked one (``time_checked_s``)
    time_checked: bool = True
    memory: bool = True
    recall: bool = False
    overlap: bool = False
    recall_rows: int = 256
    tol_factor: float = 1e-5


@dataclass
class ExperimentConf:
    """An experiment: where its rows go (``name``), what a cell is (``kind``), a stated budget,
    and its ``blocks``: block name → Hydra sweeper params (override key → value, with ``a,b,c``
    for a sweep), which ``hydra.sweeper.params`` picks up when ``block=<name>`` is set."""
    name: str = "adhoc"
    kind: str = "indexer"
    description: str = ""
    budget_minutes: Optional[float] = None
    blocks: Dict[str, Dict[str, Any]] = field(default_factory=dict)


@dataclass
class SelectConf:
    """Narrow a reproduce run (e.g. to split it over several device calls)."""
    paths: Optional[List[str]] = None
    models: Optional[List[str]] = None
    blocks: Optional[List[str]] = None
    S_min: Optional[int] = None
    S_max: Optional[int] = None


@dataclass
class LaunchConf:
    """How a launcher's jobs run their cells (set by the ``launcher`` config group)."""
    #: how a cell job starts the isolated process that measures the cell: ``fork`` (fast; the
    #: job process must be single-threaded) or ``spawn`` (a fresh interpreter)
    start_method: str = "fork"
    #: reproduce: one multirun per value of ``S`` (ascending), so that with a launcher that runs
    #: cells concurrently the skip rules still see every smaller S recorded first
    waves: bool = False


@dataclass
class SweepConf:
    """Set by the reproduce driver for every job of one run; null when a cell runs on its own."""
    id: Optional[str] = None          # recorded as ``sweep_id`` (default: the job's start time)
    deadline: Optional[float] = None  # unix time after which no further cell starts (max_minutes)
    workdir: Optional[str] = None     # calibration cache + progress events (default: Hydra's output dir)


@dataclass
class RootConf:
    model: ModelConf = field(default_factory=ModelConf)
    path: PathConf = field(default_factory=PathConf)
    hardware: HardwareConf = field(default_factory=HardwareConf)
    experiment: ExperimentConf = field(default_factory=ExperimentConf)
    measure: MeasureConf = field(default_factory=MeasureConf)
    select: SelectConf = field(default_factory=SelectConf)
    launch: LaunchConf = field(default_factory=LaunchConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    block: Optional[str] = None
    S: int = 4096
    B: int = 1
    offset: int = 0
    seed: int = 0
    dtype: Optional[str] = None
    inputs: str = "random"
    n_gpus: int = 1
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


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def known_paths() -> list[str]:
    """Path names that have a config in ``conf/path/`` (the library's paths plus ``csa``)."""
    return _options("path")


def known_models() -> list[str]:
    return _options("model")


def known_experiments() -> list[str]:
    return _options("experiment")


def known_launchers() -> list[str]:
    return _options("launcher")


# ----------------------------------------------------------------------------- value checks

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer{' or null' if allow_none else ''}, got {value!r}")


def _nonneg_int(name, value):
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")


def _positive_num(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not _is_num(value) or value <= 0:
        raise ConfigError(f"{name} must be a number > 0{' or null' if allow_none else ''}, got {value!r}")


def _nonneg_num(name, value):
    if not _is_num(value) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")


def _one_of(name, value, allowed, allow_none=False):
    if value is None and allow_none:
        return
    if value not in allowed:
        raise ConfigError(f"{name} must be {'null or ' if allow_none else ''}one of {list(allowed)}, got {value!r}")


def _names(name, values, known):
    if values is None:
        return
    if len(values) == 0:
        raise ConfigError(f"{name} must be null (no filter) or a non-empty list, got []")
    for v in values:
        if v not in known:
            raise ConfigError(f"{name}: unknown value {v!r}; known: {known}")


def validate_hardware(hw) -> None:
    _one_of("hardware.device", hw.device, DEVICES)
    _one_of("hardware.dtype", hw.dtype, KNOWN_DTYPES)
    _nonneg_int("hardware.warmup", hw.warmup)
    _positive_int("hardware.repeats", hw.repeats)
    _positive_num("hardware.time_budget_s", hw.time_budget_s)
    _nonneg_num("hardware.fast_call_s", hw.fast_call_s)
    _positive_int("hardware.bench_ms", hw.bench_ms)
    _positive_int("hardware.proxy_warmup_above_S", hw.proxy_warmup_above_S, allow_none=True)
    _positive_int("hardware.proxy_warmup_S", hw.proxy_warmup_S)
    _positive_num("hardware.cell_timeout_s", hw.cell_timeout_s)
    _positive_num("hardware.skip_predicted_call_s", hw.skip_predicted_call_s, allow_none=True)
    _positive_int("hardware.S_max", hw.S_max, allow_none=True)
    _positive_int("hardware.matmul_n", hw.matmul_n)
    _nonneg_int("hardware.gpus_per_job", hw.gpus_per_job)
    _positive_int("hardware.concurrent_blocks", hw.concurrent_blocks)
    if hw.device == "cuda" and hw.triton_interpret:
        raise ConfigError("hardware.triton_interpret=true runs the kernels on the CPU; it needs hardware.device=cpu")


def validate_driver(cfg) -> None:
    """The keys only the reproduce driver reads: experiments, max_minutes, select."""
    known = known_experiments()
    if len(cfg.experiments) == 0:
        raise ConfigError(f"experiments must name at least one experiment; known: {known}")
    for name in cfg.experiments:
        if name not in known:
            raise ConfigError(f"experiments: unknown experiment {name!r}; known: {known}")
    _positive_num("max_minutes", cfg.max_minutes, allow_none=True)
    sel = cfg.select
    _names("select.paths", sel.paths, known_paths())
    _names("select.models", sel.models, known_models())
    if sel.blocks is not None and len(sel.blocks) == 0:
        raise ConfigError("select.blocks must be null (no filter) or a non-empty list, got []")
    _positive_int("select.S_min", sel.S_min, allow_none=True)
    _positive_int("select.S_max", sel.S_max, allow_none=True)
    if sel.S_min is not None and sel.S_max is not None and sel.S_min > sel.S_max:
        raise ConfigError(f"select.S_min ({sel.S_min}) must not exceed select.S_max ({sel.S_max})")


def validate_blocks(exp) -> None:
    for block, params in exp.blocks.items():
        if params is None or len(params) == 0:
            raise ConfigError(f"experiment {exp.name!r} block {block!r}: needs at least one sweeper param")
        for key, value in params.items():
            if value is None or not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"experiment {exp.name!r} block {block!r}: {key} must be a value or a "
                                  f"comma-separated sweep string like '1,2,3', got {value!r}")


def validate_config(cfg) -> None:
    """Raise :class:`ConfigError` for the first out-of-range or unknown value of a composed
    config (the schema already checked keys and types): the cell's own values, the hardware
    profile, the launch settings and the driver's keys."""
    _positive_int("S", cfg.S)
    _positive_int("B", cfg.B)
    _nonneg_int("offset", cfg.offset)
    _nonneg_int("seed", cfg.seed)
    _positive_int("n_gpus", cfg.n_gpus)
    _one_of("inputs", cfg.inputs, INPUT_KINDS)
    for key in ("H", "D", "topk", "ratio", "attn_heads", "head_dim", "window"):
        _positive_int(f"model.{key}", cfg.model[key])
    _nonneg_int("model.rope_dim", cfg.model.rope_dim)
    for key in ("chunk_q", "chunk_t", "workspace_bytes"):
        _positive_int(f"path.{key}", cfg.path[key], allow_none=True)
    _one_of("path.name", cfg.path.name, known_paths())
    _one_of("experiment.kind", cfg.experiment.kind, KINDS)
    if (cfg.experiment.kind == "csa") != (cfg.path.name == "csa"):
        raise ConfigError(f"experiment.kind={cfg.experiment.kind!r} does not go with path={cfg.path.name!r} "
                          "(kind csa runs exactly the path `csa`)")
    if cfg.path.name == "csa":
        _one_of("path.attn_impl", cfg.path.attn_impl, ATTN_IMPLS)
    _positive_num("experiment.budget_minutes", cfg.experiment.budget_minutes, allow_none=True)
    validate_blocks(cfg.experiment)
    if cfg.block is not None and cfg.block not in cfg.experiment.blocks:
        raise ConfigError(f"block: experiment {cfg.experiment.name!r} has no block {cfg.block!r}; "
                          f"its blocks: {list(cfg.experiment.blocks)}")
    validate_hardware(cfg.hardware)
    if cfg.hardware.device != "auto" and cfg.n_gpus > max(1, cfg.hardware.gpus_per_job):
        raise ConfigError(f"n_gpus={cfg.n_gpus} exceeds the GPUs a job of hardware profile "
                          f"{cfg.hardware.name!r} has (hardware.gpus_per_job={cfg.hardware.gpus_per_job})")
    _one_of("dtype", cfg.dtype or cfg.hardware.dtype, KNOWN_DTYPES)
    _positive_int("measure.recall_rows", cfg.measure.recall_rows)
    _nonneg_num("measure.tol_factor", cfg.measure.tol_factor)
    _one_of("fail_inject", cfg.fail_inject, FAIL_INJECTIONS, allow_none=True)
    _one_of("launch.start_method", cfg.launch.start_method, START_METHODS)
    _positive_num("sweep.deadline", cfg.sweep.deadline, allow_none=True)
    validate_driver(cfg)
