"""Result tables: ``<results_dir>/<hardware>/<experiment>.csv``, read and written with pandas.

Tables are append-only: :func:`append_row` takes an exclusive lock on ``.<table>.lock`` (a hidden file next to it), reads the
table, adds the row, writes a temporary file and ``os.replace``-s it over the table, so a killed
sweep never leaves a torn table and never loses a row already written. Several attempts of one
cell may be present; :func:`current_rows` keeps the best per ``cell_id`` (ok > oom > skipped >
error, then the latest), so a later failed or smaller run never hides an earlier result.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from . import schema


def table_path(results_dir, hardware: str, experiment: str) -> Path:
    return Path(results_dir) / hardware / f"{experiment}.csv"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_table(path) -> pd.DataFrame:
    """All recorded rows of a table (every attempt), schema columns first; empty if missing."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=schema.COLUMNS)
    df = pd.read_csv(path, keep_default_na=True, low_memory=False)
    return _ordered(df)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    for c in schema.COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    extra = [c for c in df.columns if c not in schema.COLUMNS]
    return df[schema.COLUMNS + extra]


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            df.to_csv(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_rows(path, rows: list[dict]) -> None:
    """Append ``rows`` to the table at ``path`` atomically (under the table's lock)."""
    path = Path(path)
    with _locked(path):
        old = read_table(path)
        new = pd.DataFrame(rows)
        frames = [f for f in (old, new) if len(f)]
        df = pd.concat(frames, ignore_index=True) if frames else new
        _write_atomic(_ordered(df), path)


def append_row(path, row: dict) -> None:
    append_rows(path, [row])


def current_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ``cell_id``: the best status, then the latest ``date``."""
    if df.empty:
        return df
    d = df.copy()
    d["_rank"] = d["status"].map(schema.STATUS_RANK).fillna(9)
    d["_order"] = range(len(d))
    d = d.sort_values(["_rank", "date", "_order"], ascending=[True, False, False], na_position="last")
    d = d.drop_duplicates("cell_id", keep="first").sort_values("_order")
    return d.drop(columns=["_rank", "_order"]).reset_index(drop=True)


def load_results(results_dir, hardware: str) -> dict[str, pd.DataFrame]:
    """``{experiment: current rows}`` for every table under ``<results_dir>/<hardware>/``."""
    root = Path(results_dir) / hardware
    return {p.stem: current_rows(read_table(p)) for p in sorted(root.glob("*.csv"))}


def merge_tables(src_dir, dst_dir) -> dict[str, tuple[int, int]]:
    """Merge every table of ``src_dir`` into the same-named table of ``dst_dir`` (union of rows,
    exact duplicates dropped): a table is never replaced by a smaller one. Returns
    ``{table: (rows before, rows after)}``."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    report = {}
    for src in sorted(src_dir.glob("*.csv")):
        dst = dst_dir / src.name
        with _locked(dst):
            old, new = read_table(dst), read_table(src)
            frames = [f for f in (old, new) if len(f)]
            if not frames:
                continue
            df = pd.concat(frames, ignore_index=True)
            # A measurement is its cell and its timestamp; the floats are not compared, since a
            # table rewritten through CSV may print them with one digit less.
            df = df.drop_duplicates(subset=["cell_id", "date", "sweep_id", "status"], keep="first")
            if len(df) < len(old):  # cannot happen; guard the promise anyway
                raise RuntimeError(f"refusing to shrink {dst}")
            _write_atomic(_ordered(df), dst)
            report[src.name] = (len(old), len(df))
    return report


def mirror_table(path, mirror_root, hardware: str) -> None:
    """Copy a table to ``<mirror_root>/<hardware>/`` (atomically): used on the device machine to
    keep ``$OUT`` current after every row, so a killed command still returns what it measured."""
    dst_dir = Path(mirror_root) / hardware
    dst_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst_dir, prefix=Path(path).name + ".", suffix=".tmp")
    os.close(fd)
    shutil.copyfile(path, tmp)
    os.replace(tmp, dst_dir / Path(path).name)
