"""Row lookups for the claims, and the one-commit rule.

A claim is computed from rows measured at ONE commit. Rows are grouped by their commit key (the
first 7 characters of ``git_commit``, ``+dirty`` when ``git_dirty`` is true: a dirty tree is not
that commit); commits are ordered newest first by the latest ``date`` of their rows.
:func:`at_one_commit` takes what a claim needs (named lookups, each a function of the commit)
and returns the newest commit at which every lookup finds rows — or says which lookups found
rows only at different commits, or none at all.

Only rows measured on a GPU (``device == "cuda"``) count. Within a commit, a cell recorded
several times counts once: its best status (ok > oom > skipped > error), then its latest row.
Lookups default to the plain configuration of a cell: ``inputs`` random, one GPU, the path's
default chunk sizes and workspace, ``offset`` 0 (older rows without ``inputs`` / ``n_gpus``
columns count as random inputs on one GPU).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from .. import schema
from ..tables import commit_key

NUMERIC = ("S", "T", "H", "D", "B", "topk", "ratio", "offset", "chunk_q", "chunk_t", "workspace_bytes",
           "time_s", "time_checked_s", "peak_extra_gib", "peak_alloc_gib", "tflops", "frac_peak",
           "matmul_tflops", "recall_mean", "recall_min", "overlap_vs_materialize", "time_indexer_s",
           "time_attn_s", "attn_tflops", "attn_frac_peak", "n_gpus", "world_size")
KNOBS = ("chunk_q", "chunk_t", "workspace_bytes")
#: The configuration that makes two rows of different experiments the same measurement.
SAME_CELL = ("kind", "path", "model", "B", "S", "H", "D", "topk", "ratio", "offset", "dtype", "chunk_q", "chunk_t",
             "workspace_bytes", "attn_impl", "seed", "inputs", "n_gpus")


def prepare(df: pd.DataFrame, exp: str) -> pd.DataFrame:
    """Copy of ``df`` with numbers coerced and the helper columns ``_exp``, ``_commit``, ``_date``."""
    d = df.copy()
    for c in NUMERIC:
        d[c] = pd.to_numeric(d[c], errors="coerce") if c in d else float("nan")
    for c in ("path", "model", "status", "inputs", "attn_impl", "matmul_dtype", "sweep_id", "cell_id", "device"):
        d[c] = d[c].astype("string") if c in d else pd.Series(pd.NA, index=d.index, dtype="string")
    d["inputs"] = d["inputs"].fillna("random")
    d["n_gpus"] = d["n_gpus"].fillna(1)
    d["offset"] = d["offset"].fillna(0)
    d["_exp"] = exp
    dirty = d["git_dirty"] if "git_dirty" in d else pd.Series(False, index=d.index)
    commit = d["git_commit"] if "git_commit" in d else pd.Series(None, index=d.index)
    d["_commit"] = [commit_key(c, x) for c, x in zip(commit, dirty, strict=True)]
    d["_date"] = pd.to_datetime(d["date"] if "date" in d else None, utc=True, errors="coerce", format="ISO8601")
    return d


def _best_per_cell(d: pd.DataFrame) -> pd.DataFrame:
    """One row per ``cell_id``: best status, then latest date (rows without a cell id all kept)."""
    if d.empty:
        return d
    d = d.assign(_rank=d["status"].map(schema.STATUS_RANK).fillna(9), _order=range(len(d)))
    d = d.sort_values(["_rank", "_date", "_order"], ascending=[True, False, False], na_position="last")
    keyed = d[d["cell_id"].notna()].drop_duplicates("cell_id", keep="first")
    d = pd.concat([keyed, d[d["cell_id"].isna()]]).sort_values("_order")
    return d.drop(columns=["_rank", "_order"])


class Rows:
    """Lookups over ``{experiment: rows}`` (every recorded attempt, or the current rows)."""

    def __init__(self, tables: dict):
        frames = [prepare(df, exp) for exp, df in tables.items()
                  if df is not None and len(df) and "device" in df.columns]
        d = pd.concat(frames, ignore_index=True) if frames else prepare(pd.DataFrame(columns=schema.COLUMNS), "")
        self.all = d[d["device"] == "cuda"].reset_index(drop=True)
        last = self.all.groupby("_commit")["_date"].max().sort_values(ascending=False, na_position="last")
        #: commit keys, newest first (by the latest row measured at each)
        self.commits: list[str] = list(last.index)
        self.commit_dates = {c: last[c] for c in self.commits}

    def rows(self, exps, *, commit: str | None = None, path=None, model=None, S=None, inputs="random",
             n_gpus=1, attn_impl=None, default_knobs: bool = True, statuses=("ok",), need=()) -> pd.DataFrame:
        """Matching rows of the experiments ``exps`` (all of them, in that order of preference:
        a cell found in an earlier experiment is not repeated from a later one) at ``commit``
        (every commit when None). ``need``: columns that must hold a number."""
        d = self.all
        d = d[d["_exp"].isin(list(exps))]
        if commit is not None:
            d = d[d["_commit"] == commit]
        for col, val in (("path", path), ("model", model), ("inputs", inputs), ("attn_impl", attn_impl)):
            if val is not None:
                d = d[d[col] == val]
        if S is not None:
            d = d[d["S"] == S]
        if n_gpus is not None:
            d = d[d["n_gpus"] == n_gpus]
        if default_knobs:
            d = d[d[list(KNOBS)].isna().all(axis=1) & (d["offset"] == 0)]
        if statuses is not None:
            d = d[d["status"].isin(list(statuses))]
        for c in need:
            d = d[d[c].notna()]
        if d.empty:
            return d
        d = _best_per_cell(d) if commit is not None else _best_per_cell(d.sort_values("_date"))
        rank = {e: i for i, e in enumerate(exps)}
        d = d.assign(_erank=d["_exp"].map(rank)).sort_values(["_erank", "_date"], kind="stable")
        d = d.drop_duplicates([c for c in SAME_CELL if c in d], keep="first")
        return d.drop(columns="_erank").reset_index(drop=True)

    def one(self, exps, *, commit: str | None = None, **filters) -> pd.Series | None:
        """The matching row of the first experiment in ``exps`` that has one (None if absent)."""
        d = self.rows(exps, commit=commit, **filters)
        return None if d.empty else d.iloc[0]


def present(x) -> bool:
    if x is None:
        return False
    if isinstance(x, pd.DataFrame):
        return not x.empty
    return True


@dataclass
class Pick:
    """What :func:`at_one_commit` found: ``got`` holds every lookup's rows; ``commit`` is the one
    commit they all come from, or None when no single commit has them all (``mixed`` then names
    the newest commit of each lookup) or some lookup found nothing (``missing``)."""

    commit: str | None
    got: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    mixed: dict = field(default_factory=dict)

    def tables(self) -> list[str]:
        names = []
        for v in self.got.values():
            exps = [v["_exp"]] if isinstance(v, pd.Series) else list(v["_exp"].unique()) if present(v) else []
            names += [f"{e}.csv" for e in exps if f"{e}.csv" not in names]
        return names

    def source(self) -> str:
        if self.commit is not None:
            return " + ".join(self.tables()) + f" @ {self.commit}"
        if self.mixed:
            return "; ".join(f"{label} @ {c}" for label, c in self.mixed.items())
        return ""


def at_one_commit(r: Rows, needs: dict[str, Callable[[str], object]]) -> Pick:
    """The newest commit at which every lookup of ``needs`` (label → function of a commit key,
    returning a row, a frame or None) finds rows."""
    for c in r.commits:
        got = {label: fn(c) for label, fn in needs.items()}
        if all(present(v) for v in got.values()):
            return Pick(c, got)
    got, mixed, missing = {}, {}, []
    for label, fn in needs.items():
        for c in r.commits:
            v = fn(c)
            if present(v):
                got[label], mixed[label] = v, c
                break
        else:
            missing.append(label)
    return Pick(None, got, missing, mixed if not missing else {})
