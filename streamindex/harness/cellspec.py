"""One sweep cell, as a plain picklable / JSON-able record: what to run, how to measure it, and
the command that reproduces it. Built from a composed (and validated) Hydra config by
:func:`spec_from_config`; handed to the process that measures the cell as a dict (fork) or as
a JSON file (``python -m streamindex.harness.cell_worker SPEC_JSON OUT_JSON``, and the
distributed cell under ``torchrun``), written by :meth:`CellSpec.to_json` and read back by
:meth:`CellSpec.from_json`."""
from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from . import schema


@dataclass
class CellSpec:
    experiment: str
    block: str
    kind: str                     # indexer | csa
    hardware: str
    device: str                   # cuda | cpu
    path: str
    model: str
    B: int
    S: int
    H: int
    D: int
    topk: int
    ratio: int
    offset: int
    dtype: str                    # bf16 | fp16 | fp32 (fp8 paths quantise these inputs)
    seed: int
    chunk_q: Optional[int]
    chunk_t: Optional[int]
    workspace_bytes: Optional[int]
    attn_impl: Optional[str]
    model_dims: dict              # the full model group (CSA needs attn_heads, head_dim, ...)
    measure_time: bool
    measure_memory: bool
    measure_recall: bool
    measure_overlap: bool
    recall_rows: int
    tol_factor: float
    warmup: int
    repeats: int
    time_budget_s: float
    fast_call_s: float
    bench_ms: int
    proxy_warmup_above_S: Optional[int]
    proxy_warmup_S: int
    cell_timeout_s: float
    skip_predicted_call_s: Optional[float]
    triton_interpret: bool
    fail_inject: Optional[str]
    command: str
    inputs: str = "random"        # random | ties8 | recency (streamindex.make_inputs(kind=...))
    n_gpus: int = 1               # > 1: a distributed cell, run under torchrun
    measure_time_checked: bool = True
    #: the bf16 dense matmul rate measured at the start of the sweep (filled in by the cell job
    #: before the cell runs; the CSA step's ``attn_frac_peak`` divides by it)
    matmul_tflops: Optional[float] = None

    @property
    def T(self) -> int:
        return max(1, self.S // self.ratio)

    def config_row(self) -> dict:
        """The configuration columns of this cell's row."""
        row = {c: getattr(self, c, None) for c in schema.CONFIG_COLUMNS}
        row.update(T=self.T, measure_time=self.measure_time, measure_memory=self.measure_memory,
                   measure_recall=self.measure_recall, measure_overlap=self.measure_overlap,
                   recall_rows=self.recall_rows if self.measure_recall else None)
        return row

    @property
    def cell_id(self) -> str:
        return schema.cell_id(self.config_row())

    @property
    def family_id(self) -> str:
        return schema.family_id(self.config_row())

    @property
    def label(self) -> str:
        """Short human name: ``stream v4_flash S=65536`` (plus what differs from the defaults)."""
        extra = [f"inputs={self.inputs}"] if self.inputs != "random" else []
        extra += [f"n_gpus={self.n_gpus}"] if self.n_gpus != 1 else []
        extra += [f"attn={self.attn_impl}"] if self.attn_impl else []
        return " ".join([self.path, self.model, f"S={self.S}", *extra])

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict) -> "CellSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"CellSpec: unknown field(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path) -> "CellSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))


#: Overrides that say how a cell was launched, not what it is: left out of its command.
_NOT_IN_COMMAND = ("sweep", "launcher", "results_dir", "mirror_dir", "hydra")
#: Overrides printed first in a command, in this order.
_LEADING = ("experiment", "hardware", "block")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def command_overrides(overrides) -> list[str]:
    """The overrides that define a cell, in a stable order: ``experiment``, ``hardware``,
    ``block`` first, then the rest as given; launch-only keys (sweep.*, launcher, results_dir,
    mirror_dir) dropped."""
    keep = [o for o in overrides if _key(o).split(".", 1)[0] not in _NOT_IN_COMMAND]
    lead = [o for k in _LEADING for o in keep if _key(o) == k]
    return lead + [o for o in keep if o not in lead]


def entry_command() -> list[str]:
    """How a user runs one cell here: ``python -m experiments.cell`` in a source checkout,
    ``streamindex-cell`` after a plain install (no ``experiments`` package there)."""
    checkout = Path(__file__).resolve().parents[2] / "experiments" / "cell.py"
    return ["python", "-m", "experiments.cell"] if checkout.exists() else ["streamindex-cell"]


def cell_command(overrides) -> str:
    """The command line that reruns exactly this cell with the Hydra entry point."""
    return " ".join([*entry_command(), *(shlex.quote(o) for o in command_overrides(overrides))])


def spec_from_config(cfg, *, block: str, overrides, device: str) -> CellSpec:
    """A :class:`CellSpec` from a composed, validated config (``device`` already resolved)."""
    from omegaconf import OmegaConf

    hw, m, p, meas = cfg.hardware, cfg.model, cfg.path, cfg.measure
    return CellSpec(
        experiment=cfg.experiment.name, block=block, kind=cfg.experiment.kind, hardware=hw.name,
        device=device, path=p.name, model=m.name, B=cfg.B, S=cfg.S, H=m.H, D=m.D, topk=m.topk,
        ratio=m.ratio, offset=cfg.offset, dtype=cfg.dtype or hw.dtype, seed=cfg.seed,
        chunk_q=p.chunk_q, chunk_t=p.chunk_t, workspace_bytes=p.workspace_bytes,
        attn_impl=p.attn_impl if p.name == "csa" else None,
        model_dims=OmegaConf.to_container(m, resolve=True),
        measure_time=meas.time, measure_memory=meas.memory, measure_recall=meas.recall,
        measure_overlap=meas.overlap, recall_rows=meas.recall_rows, tol_factor=meas.tol_factor,
        warmup=hw.warmup, repeats=hw.repeats, time_budget_s=hw.time_budget_s,
        fast_call_s=hw.fast_call_s, bench_ms=hw.bench_ms,
        proxy_warmup_above_S=hw.proxy_warmup_above_S, proxy_warmup_S=hw.proxy_warmup_S,
        cell_timeout_s=hw.cell_timeout_s, skip_predicted_call_s=hw.skip_predicted_call_s,
        triton_interpret=hw.triton_interpret, fail_inject=cfg.fail_inject,
        command=cell_command(overrides), inputs=cfg.inputs, n_gpus=cfg.n_gpus,
        measure_time_checked=meas.time_checked,
    )
