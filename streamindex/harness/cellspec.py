"""One sweep cell, as a plain picklable record: what to run, how to measure it, and the command
that reproduces it. Built from a composed (and validated) Hydra config by :func:`spec_from_config`."""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
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

    def to_dict(self) -> dict:
        return asdict(self)


def cell_command(overrides: list[str], python: str = "python") -> str:
    """The command line that reruns exactly this cell with the Hydra entry point."""
    return " ".join([python, "-m", "experiments.cell", *(shlex.quote(o) for o in overrides)])


def spec_from_config(cfg, *, block: str, overrides: list[str], device: str) -> CellSpec:
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
        command=cell_command(overrides),
    )
