"""Experiment grids → per-cell Hydra override lists.

An experiment config holds ``sweeps``: blocks, each a ``grid`` (override key → list of values)
plus fixed ``overrides``. A block expands to the cartesian product of its grid in key order
(the last key varies fastest, so ``S`` listed last runs small to large and the skip rules see
the smaller S first). Each cell is then composed by Hydra from
``experiment=<name> hardware=<hw> <block overrides> <grid overrides>``, which is also the
command line that reproduces it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class CellOverrides:
    block: str
    overrides: tuple[str, ...]


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def expand_block(name: str, grid: dict, fixed: list[str]) -> list[CellOverrides]:
    keys = list(grid)
    cells = []
    for combo in itertools.product(*(list(grid[k]) for k in keys)):
        ov = list(fixed) + [f"{k}={_value(v)}" for k, v in zip(keys, combo)]
        cells.append(CellOverrides(name, tuple(ov)))
    return cells


def expand_experiment(sweeps) -> list[CellOverrides]:
    """Every cell of an experiment's ``sweeps`` (a list of ``{name, grid, overrides}``)."""
    out = []
    for block in sweeps:
        out += expand_block(block["name"], dict(block["grid"]), list(block.get("overrides") or []))
    return out


def selected(cfg, select) -> bool:
    """Whether a composed cell config passes the ``select`` filters (paths, models, S range)."""
    if select.paths is not None and cfg.path.name not in select.paths:
        return False
    if select.models is not None and cfg.model.name not in select.models:
        return False
    if select.S_min is not None and cfg.S < select.S_min:
        return False
    if select.S_max is not None and cfg.S > select.S_max:
        return False
    return True
