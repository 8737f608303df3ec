"""Result tables: ``<results_dir>/<hardware>/<experiment>.csv``, read and written with pandas.

Writing. Tables are append-only. :func:`append_rows` takes an exclusive ``flock`` on
``.<table>.lock`` (a hidden file next to the table), reads the table, adds the rows, writes a
temporary ``<table>.<random>.tmp`` and ``os.replace``-s it over the table, so a killed writer never
leaves a torn table and never loses a row already written; concurrent writers lose no row. A
temporary file seen under the lock belongs to a writer that was killed (a live writer holds the
lock while its temporary exists) and is removed. Tables, side files and mirrors get mode
``0o666`` less the process umask (0644 under the usual umask 022).

Reading. :func:`read_table` never fails on a damaged line and never changes the table. A line
is *damaged* when it is cut (the file does not end with a newline), holds NUL bytes, is not UTF-8,
is not one well-formed CSV record, has another field count than the header, has a ``status``
outside :data:`schema.STATUSES`, holds text in a column of :data:`NUMERIC_COLUMNS`, or has no
``cell_id`` or one that does not describe the row's configuration (see :func:`cell_id_matches`).
A damaged line is not a recorded row (so a sweep reruns its cell); it is copied verbatim to the
side file ``<table>.quarantine`` (e.g. ``bench.csv.quarantine``) and a
:class:`DamagedRowsWarning` names that file and the line numbers. The next append (or merge)
rewrites the table without it (each distinct damaged line is kept once in the side file). When
the ``cell_id`` of most rows disagrees with ``schema.cell_id`` (the key fields changed: that is
not damage), those rows are kept and the warning says so. A table whose header cannot be read
raises :class:`TableReadError`, which names the file and the line.

The rows :func:`read_table` returns are typed: :data:`NUMERIC_COLUMNS` are numbers,
:data:`TEXT_COLUMNS` (``status`` among them) are ``str`` or missing (NaN), flags are booleans;
columns the table lacks are NaN, and columns this module does not know are kept, typed by pandas.

Several attempts of one cell may be present; :func:`current_rows` keeps the best per ``cell_id``
(ok > oom > skipped > error, then the latest), so a later failed or smaller run never hides an
earlier result.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import numbers
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from . import schema

#: Suffix of the side file that keeps the damaged lines of a table (``bench.csv.quarantine``).
QUARANTINE_SUFFIX = ".quarantine"

#: Columns that hold numbers (when present in a table). Text in one of them marks the line damaged.
NUMERIC_COLUMNS = (
    "B", "S", "T", "H", "D", "topk", "ratio", "offset", "chunk_q", "chunk_t", "workspace_bytes", "seed",
    "recall_rows", "time_s", "time_checked_s", "peak_alloc_gib", "peak_extra_gib", "tflops", "frac_peak",
    "tokens_per_s", "recall_mean", "recall_min", "overlap_vs_materialize", "useful_flops", "time_indexer_s",
    "time_attn_s", "attn_tflops", "attn_frac_floor", "attn_frac_peak", "n_repeats", "warmup", "warmup_S",
    "matmul_tflops", "wall_s", "n_gpus", "world_size",
)
#: Columns read as text whatever they look like (a version "12.10", a commit "0123456" stay as written).
TEXT_COLUMNS = (
    "experiment", "block", "kind", "hardware", "device", "path", "model", "dtype", "attn_impl", "fail_inject",
    "inputs", "launcher", "status", "reason", "timing_method", "matmul_dtype", "note", "gpu_name",
    "gpu_driver", "cuda_version", "torch_version", "triton_version", "tilelang_version", "python_version",
    "git_commit", "hostname", "date", "sweep_id", "cell_id", "command",
)
#: pandas < 3 parses floats to the nearest double only when asked; 3.x always does (and deprecates asking).
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
#: What makes two rows the same measurement when tables are merged.
MERGE_KEY = ["cell_id", "date", "sweep_id", "status"]


class TableReadError(RuntimeError):
    """A results table that cannot be read at all: the file cannot be opened, or its header line
    is damaged. ``path`` is the file, ``line`` the 1-based line number (``None`` when the file
    itself cannot be opened)."""

    def __init__(self, path, line: int | None, problem: str):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"results table {where}: {problem}")


class DamagedRowsWarning(UserWarning):
    """Damaged lines were found in a results table; they do not count as recorded rows."""


class ResultsDirNotWritable(OSError):
    """The results directory cannot be created or written (see :func:`check_writable`)."""


@dataclass(frozen=True)
class DamagedLine:
    """One damaged record of a table: its first line number (1-based, the header is line 1), its
    bytes without the final newline, and why it was rejected."""

    line: int
    raw: bytes
    reason: str


# ----------------------------------------------------------------------------- paths, locks, files

def table_path(results_dir, hardware: str, experiment: str) -> Path:
    """``<results_dir>/<hardware>/<experiment>.csv``."""
    return Path(results_dir) / hardware / f"{experiment}.csv"


def quarantine_path(path) -> Path:
    """The side file that keeps the damaged lines of the table at ``path``: ``<table>.quarantine``."""
    path = Path(path)
    return path.with_name(path.name + QUARANTINE_SUFFIX)


def check_writable(results_dir, hardware: str) -> Path:
    """Create ``<results_dir>/<hardware>/`` if needed and prove it writable by creating and removing
    a probe file in it. Returns the directory; raises :class:`ResultsDirNotWritable` (an
    ``OSError``) naming it otherwise. Call it before any work whose rows go there."""
    folder = Path(results_dir) / hardware
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe, fd = _create_exclusive(folder, ".write-probe-", "")
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ResultsDirNotWritable(
            err.errno, f"results directory {folder} cannot be written ({err.strerror or err}); "
            "choose another results_dir or fix its permissions", str(folder)) from err
    return folder


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _create_exclusive(folder: Path, prefix: str, suffix: str) -> tuple[Path, int]:
    """A new file ``<prefix><random><suffix>`` opened for writing with mode 0o666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return name, os.open(name, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique file {prefix}*{suffix} in {folder}")


def _stale_tmps(path: Path) -> list[Path]:
    pattern = re.compile(re.escape(path.name) + r"\.[^.]+\.tmp")
    with contextlib.suppress(FileNotFoundError):
        return [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    return []


def _remove_stale_tmps(path: Path) -> None:
    """Remove the temporaries of ``path`` left by killed writers. Call only under ``path``'s lock."""
    for tmp in _stale_tmps(path):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace_atomic(path: Path, write) -> None:
    """Write a temporary next to ``path`` with ``write(binary file)``, fsync it, rename it over ``path``."""
    tmp, fd = _create_exclusive(path.parent, path.name + ".", ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    data = df.to_csv(index=False, lineterminator="\n").encode("utf-8")
    _replace_atomic(path, lambda fh: fh.write(data))


# ----------------------------------------------------------------------------- parsing

def _fields(raw: bytes) -> list[str] | str:
    """The fields of one CSV record, or what is wrong with it."""
    if b"\x00" in raw:
        return "holds NUL bytes"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"is not valid UTF-8 (byte {err.start})"
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as err:
        return f"is not well-formed CSV ({err})"
    if len(rows) != 1:
        return "is not one CSV record"
    return rows[0]


def _physical_lines(data: bytes) -> list[tuple[int, bytes, bool]]:
    """``(line number, bytes, ends with a newline)`` for each line of ``data``."""
    parts = data.split(b"\n")
    tail = parts.pop()
    lines = [(i + 1, p[:-1] if p.endswith(b"\r") else p, True) for i, p in enumerate(parts)]
    if tail:
        lines.append((len(parts) + 1, tail, False))
    return lines


def _records(lines: list[tuple[int, bytes, bool]], n_fields: int):
    """Group physical lines into CSV records (a quoted field may hold newlines). A line that
    opens a quote which no later line closes into a record of ``n_fields`` fields stands alone
    (and is then found damaged), so one stray quote cannot swallow the lines after it."""
    i = 0
    while i < len(lines):
        no, raw, complete = lines[i]
        if raw.count(b'"') % 2 == 0 or not complete:
            yield no, raw, complete
            i += 1
            continue
        j, odd, parts = i + 1, True, [raw]
        while odd and j < len(lines):
            parts.append(lines[j][1])
            odd ^= lines[j][1].count(b'"') % 2 == 1
            j += 1
        joined = b"\n".join(parts)
        fields = None if odd else _fields(joined)
        if isinstance(fields, list) and len(fields) == n_fields:
            yield no, joined, lines[j - 1][2]
            i = j
        else:
            yield no, raw, complete
            i += 1


def cell_id_matches(cell_id, row: Mapping, columns) -> bool:
    """Whether ``cell_id`` describes ``row``: it equals ``schema.cell_id(row)``, or — for a row
    recorded under an earlier list of key fields — it is ``schema.key_of(row, F)`` for the
    fields ``F`` it names, every one of them a column of the table (``columns``), and every key
    field of today's schema that it does not name is empty in the row."""
    if not isinstance(cell_id, str) or not cell_id:
        return False
    if cell_id == schema.cell_id(row):
        return True
    names = []
    for part in cell_id.split("|"):
        name, sep, _ = part.partition("=")
        if not sep or not name or name not in columns or name in names:
            return False
        names.append(name)
    if schema.key_of(row, names) != cell_id:
        return False
    return all(schema.key_of(row, [f]) == f"{f}=null" for f in schema.CELL_KEY_FIELDS if f not in names)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=schema.COLUMNS)


def _header(path: Path, line: tuple[int, bytes, bool]) -> list[str]:
    no, raw, complete = line
    if not complete:
        raise TableReadError(path, no, "the header line is cut (no newline after it); the file holds no "
                             "complete row. Move the file aside to start the table afresh")
    header = _fields(raw)
    if isinstance(header, str):
        raise TableReadError(path, no, f"the header line {header}")
    missing = [c for c in ("status", "cell_id") if c not in header]
    if missing:
        raise TableReadError(path, no, f"the header has no {' / '.join(missing)} column: not a results table")
    if len(set(header)) != len(header):
        repeated = sorted({c for c in header if header.count(c) > 1})
        raise TableReadError(path, no, f"the header repeats column(s) {repeated}")
    return header


def _split_records(lines, header: list[str]):
    """The well-formed records (``(line, bytes)`` and their fields) and the damaged ones."""
    kept, fields_of_kept, damaged = [], [], []
    for no, raw, complete in _records(lines, len(header)):
        if complete and not raw:
            continue                                    # a blank line is not a row
        if not complete:
            damaged.append(DamagedLine(no, raw, "cut: the file does not end with a newline (an interrupted write)"))
            continue
        fields = _fields(raw)
        if isinstance(fields, str):
            damaged.append(DamagedLine(no, raw, f"the line {fields}"))
        elif len(fields) != len(header):
            damaged.append(DamagedLine(no, raw, f"{len(fields)} fields where the header has {len(header)}"))
        else:
            kept.append((no, raw))
            fields_of_kept.append(fields)
    return kept, fields_of_kept, damaged


def _frame(header: list[str], rows: list[list[str]]) -> pd.DataFrame:
    """pandas' reading of well-formed records (re-written as canonical CSV), text columns as ``str``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    buf.seek(0)
    return pd.read_csv(buf, dtype={c: str for c in TEXT_COLUMNS if c in header}, low_memory=False,
                       skip_blank_lines=False, **_EXACT_FLOATS)


def _row_problems(path: Path, df: pd.DataFrame, header: list[str]) -> list[list[str]]:
    """What is wrong with each row of ``df``: text in a numeric column, a status outside
    ``schema.STATUSES``, a missing or foreign ``cell_id``."""
    reasons: list[list[str]] = [[] for _ in range(len(df))]
    as_numbers = {}
    for c in (c for c in NUMERIC_COLUMNS if c in df.columns):
        col = df[c]
        if is_numeric_dtype(col) and not is_bool_dtype(col):
            continue
        num = pd.to_numeric(col.mask(col.map(_is_bool).astype(bool)), errors="coerce")
        for i in (col.notna() & num.isna()).to_numpy().nonzero()[0]:
            reasons[i].append(f"{c} = {str(col.iloc[i])[:40]!r} is not a number")
        as_numbers[c] = num
    status = df["status"]
    for i in (~status.isin(schema.STATUSES)).to_numpy().nonzero()[0]:
        value = status.iloc[i]
        reasons[i].append("no status" if pd.isna(value) else
                          f"status {str(value)[:40]!r} is not one of {'/'.join(schema.STATUSES)}")
    id_only = []
    measured = set(schema.METRIC_COLUMNS) | set(schema.PROVENANCE_COLUMNS) | {"command"}
    config = [c for c in header if c not in measured]      # what a cell id may name (and cell_id)
    for i, row in enumerate(df.assign(**as_numbers)[config].to_dict("records")):
        cid = row.get("cell_id")
        if not isinstance(cid, str) or not cid:
            reasons[i].append("no cell_id")
        elif not cell_id_matches(cid, row, config):
            if not reasons[i]:
                id_only.append(i)
            reasons[i].append("its cell_id does not match its configuration columns")
    if len(id_only) >= 2 and len(id_only) >= sum(1 for r in reasons if not r):
        # Most rows disagree with today's cell ids: the id scheme changed; that is not damage.
        warnings.warn(f"results table {path}: the cell_id of {len(id_only)} of {len(df)} rows does not match "
                      "their configuration under today's schema.cell_id; the rows are kept as recorded",
                      DamagedRowsWarning, stacklevel=5)
        for i in id_only:
            reasons[i] = []
    return reasons


def _parse(path: Path, data: bytes) -> tuple[pd.DataFrame, list[DamagedLine]]:
    """The clean, typed rows of a table's bytes and its damaged lines (sorted by line)."""
    lines = _physical_lines(data.removeprefix(b"\xef\xbb\xbf"))
    while lines and lines[0][2] and not lines[0][1].strip():
        lines.pop(0)                                    # blank lines before the header
    if not lines:
        return _empty(), []
    header = _header(path, lines[0])
    kept, fields, damaged = _split_records(lines[1:], header)
    df = _frame(header, fields)
    if len(df) != len(kept):  # cannot happen: every record was checked above
        raise TableReadError(path, None, f"pandas read {len(df)} rows where {len(kept)} records were found")
    reasons = _row_problems(path, df, header)
    bad = [i for i, r in enumerate(reasons) if r]
    damaged += [DamagedLine(kept[i][0], kept[i][1], "; ".join(reasons[i])) for i in bad]
    df = df.drop(index=df.index[bad]).reset_index(drop=True)
    for c in NUMERIC_COLUMNS:
        if c in df.columns and not is_numeric_dtype(df[c]):
            df[c] = pd.to_numeric(df[c])
    return df, sorted(damaged, key=lambda d: d.line)


def _load(path: Path) -> tuple[pd.DataFrame, list[DamagedLine]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _empty(), []
    except OSError as err:
        raise TableReadError(path, None, f"cannot be read ({err.strerror or err})") from err
    return _parse(path, data)


def _quarantine(path: Path, damaged: list[DamagedLine]) -> Path:
    """Append the damaged lines that the side file does not hold yet (each distinct line once,
    behind a ``# <date> <table> line <n>: <reason>`` comment line). Raises ``OSError`` when the
    side file cannot be written."""
    qpath = quarantine_path(path)
    try:
        held = qpath.read_bytes()
    except FileNotFoundError:
        held = b""
    out = bytearray(b"\n" if held and not held.endswith(b"\n") else b"")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for d in damaged:
        if b"\n" + d.raw + b"\n" in held + out:
            continue
        reason = d.reason.replace("\n", " ")
        out += f"# {stamp} {path.name} line {d.line}: {reason}\n".encode() + d.raw + b"\n"
    if out.strip():
        with open(qpath, "ab") as fh:
            fh.write(out)
            fh.flush()
            os.fsync(fh.fileno())
    return qpath


def _warn_damaged(path: Path, damaged: list[DamagedLine], *, removed: bool, problem: str | None = None) -> None:
    shown = "; ".join(f"line {d.line}: {d.reason}" for d in damaged[:8])
    more = f"; and {len(damaged) - 8} more" if len(damaged) > 8 else ""
    qpath = quarantine_path(path)
    if problem:
        where = f"they could not be copied to {qpath} ({problem}); the table is left as it is"
    elif removed:
        where = f"moved to {qpath}"
    else:
        where = f"copied to {qpath}; the table is rewritten without them at its next append"
    warnings.warn(f"results table {path}: {len(damaged)} damaged line(s) do not count as recorded rows (a "
                  f"sweep runs their cells again): {shown}{more}; {where}", DamagedRowsWarning, stacklevel=3)


# ----------------------------------------------------------------------------- the public functions

def read_table(path) -> pd.DataFrame:
    """All recorded rows of a table (every attempt), typed, schema columns first, extra columns
    after them; empty if the file is missing. Damaged lines are left out, copied to
    :func:`quarantine_path` and reported by a :class:`DamagedRowsWarning`; the table itself is
    not changed. Raises :class:`TableReadError` when the table cannot be read at all."""
    path = Path(path)
    df, damaged = _load(path)
    if damaged:
        try:
            with _locked(path):
                _quarantine(path, damaged)
        except OSError as err:
            _warn_damaged(path, damaged, removed=False, problem=str(err))
        else:
            _warn_damaged(path, damaged, removed=False)
    return _ordered(df)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    for c in schema.COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    extra = [c for c in df.columns if c not in schema.COLUMNS]
    return df[schema.COLUMNS + extra]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of ``frames`` in order, for writing: every value as it is (object columns), so a flag
    appended under a column that was empty stays ``True`` (not ``1.0``) and an int stays an int."""
    frames = [f.astype(object) for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _check_row(i: int, row) -> None:
    if not isinstance(row, Mapping):
        raise TypeError(f"rows[{i}] must be a mapping of column -> value, got {type(row).__name__}")
    if row.get("status") not in schema.STATUSES:
        raise ValueError(f"rows[{i}]['status'] = {row.get('status')!r} is not one of {schema.STATUSES}")
    for c in NUMERIC_COLUMNS:
        v = row.get(c)
        if not _is_missing(v) and (_is_bool(v) or not isinstance(v, numbers.Real)):
            raise ValueError(f"rows[{i}][{c!r}] = {v!r} is not a number")
    if not cell_id_matches(row.get("cell_id"), row, list(row)):
        raise ValueError(f"rows[{i}]['cell_id'] = {row.get('cell_id')!r} is not schema.cell_id of the row's "
                         f"configuration ({schema.cell_id(row)!r})")


def append_rows(path, rows: list[dict]) -> None:
    """Append ``rows`` to the table at ``path`` atomically, under the table's lock. Each row needs
    a ``status`` of :data:`schema.STATUSES`, numbers in :data:`NUMERIC_COLUMNS` and the
    ``cell_id`` of its configuration (else ``ValueError``, and nothing is written). Damaged lines
    already in the table move to its quarantine file; stale temporaries are removed."""
    path = Path(path)
    rows = list(rows)
    for i, row in enumerate(rows):
        _check_row(i, row)
    new = pd.DataFrame(rows)
    with _locked(path):
        _remove_stale_tmps(path)
        old, damaged = _load(path)
        if damaged:
            _quarantine(path, damaged)
        _write_atomic(_ordered(_concat([old, new])), path)
    if damaged:
        _warn_damaged(path, damaged, removed=True)


def append_row(path, row: dict) -> None:
    """:func:`append_rows` of one row."""
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


def _merge_keys(df: pd.DataFrame) -> pd.Series:
    return pd.Series([schema.key_of(r, MERGE_KEY) for r in df[MERGE_KEY].to_dict("records")], index=df.index,
                     dtype=object)


def merge_tables(src_dir, dst_dir) -> dict[str, tuple[int, int]]:
    """Merge every table of ``src_dir`` into the same-named table of ``dst_dir``: the rows of the
    source whose (``cell_id``, ``date``, ``sweep_id``, ``status``) the destination does not hold
    yet are appended, so a table never shrinks. Floats are not compared: a table rewritten
    through CSV may print them with one digit less. Damaged lines of either side are handled as
    :func:`read_table` and :func:`append_rows` do. Returns ``{table: (rows before, rows after)}``."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    report = {}
    for src in sorted(src_dir.glob("*.csv")):
        dst = dst_dir / src.name
        if dst.exists() and os.path.samefile(src, dst):
            raise ValueError(f"merge source and destination are the same table: {src}")
        new = read_table(src)
        with _locked(dst):
            _remove_stale_tmps(dst)
            old, damaged = _load(dst)
            if damaged:
                _quarantine(dst, damaged)
            old = _ordered(old)
            if not len(old) and not len(new):
                continue
            fresh = new[~_merge_keys(new).isin(set(_merge_keys(old)))] if len(old) else new
            fresh = fresh[~_merge_keys(fresh).duplicated()] if len(fresh) else fresh
            df = _concat([old, fresh])
            if len(df) < len(old):  # cannot happen; guard the promise anyway
                raise RuntimeError(f"refusing to shrink {dst}")
            if len(fresh) or damaged or not dst.exists():
                _write_atomic(_ordered(df), dst)
            report[src.name] = (len(old), len(df))
        if damaged:
            _warn_damaged(dst, damaged, removed=True)
    return report


def mirror_table(path, mirror_root, hardware: str) -> None:
    """Copy a table, and its quarantine file if it has one, to ``<mirror_root>/<hardware>/``
    (atomically, under the copy's lock): used on the device machine to keep ``$OUT`` current after
    every row, so a killed command still returns what it measured."""
    path = Path(path)
    dst = Path(mirror_root) / hardware / path.name
    with _locked(dst):
        for src, target in ((path, dst), (quarantine_path(path), quarantine_path(dst))):
            _remove_stale_tmps(target)
            try:
                fh = open(src, "rb")
            except FileNotFoundError:
                if src == path:
                    raise
                continue                                # no quarantine file: nothing to copy
            with fh:
                _replace_atomic(target, lambda out, fh=fh: shutil.copyfileobj(fh, out))
