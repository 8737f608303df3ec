"""The columns of a result row (DESIGN.md §3): configuration, measurements, status, provenance,
and ``command``, the exact command line that reproduces the row.

Every table under ``results/<hardware>/`` holds these columns in this order (extra columns a
cell returns, e.g. the CSA step's, follow). Units: seconds and GiB (2^30 bytes).
"""
from __future__ import annotations

import math

STATUSES = ("ok", "oom", "error", "skipped")
#: A rerun does not repeat a cell recorded with one of these statuses.
DONE_STATUSES = ("ok", "oom")
#: Which row wins when a cell was recorded several times (lower = better); ties → the latest.
STATUS_RANK = {"ok": 0, "oom": 1, "skipped": 2, "error": 3}

#: What the cell is (``cell_id`` is built from these, except ``block``).
CONFIG_COLUMNS = [
    "experiment", "block", "kind", "hardware", "device", "path", "model", "B", "S", "T", "H", "D",
    "topk", "ratio", "offset", "dtype", "inputs", "chunk_q", "chunk_t", "workspace_bytes", "attn_impl", "seed",
    "n_gpus", "measure_time", "measure_memory", "measure_recall", "measure_overlap", "recall_rows", "fail_inject",
]

#: What was measured. ``time_s`` is the call with ``check_finite=False``, ``time_checked_s`` the
#: default call (``check_finite=True``); ``frac_peak = tflops / (world_size · matmul_tflops)``,
#: ``matmul_tflops`` being the dense matmul rate of the path's own input dtype measured in the
#: same sweep (``matmul_dtype`` names it). CSA rows also fill ``time_indexer_s``, ``time_attn_s``,
#: ``attn_tflops`` and ``attn_frac_peak`` (``attn_tflops`` / the measured bf16 rate).
METRIC_COLUMNS = [
    "status", "reason", "time_s", "time_checked_s", "peak_alloc_gib", "peak_extra_gib", "tflops", "frac_peak",
    "tokens_per_s", "recall_mean", "recall_min", "overlap_vs_materialize", "useful_flops",
    "time_indexer_s", "time_attn_s", "attn_tflops", "attn_frac_peak", "world_size",
    "n_repeats", "warmup", "warmup_S", "timing_method", "matmul_tflops", "matmul_dtype", "note",
    "wall_s",
]

PROVENANCE_COLUMNS = [
    "gpu_name", "gpu_driver", "cuda_version", "torch_version", "triton_version", "tilelang_version",
    "python_version", "git_commit", "git_dirty", "hostname", "date", "sweep_id", "launcher",
]

ID_COLUMNS = ["cell_id", "command"]

COLUMNS = CONFIG_COLUMNS + METRIC_COLUMNS + PROVENANCE_COLUMNS + ID_COLUMNS

#: Configuration fields that identify a cell; ``S`` is left out of its *family* (same cell, other S).
CELL_KEY_FIELDS = [c for c in CONFIG_COLUMNS if c not in ("block", "T", "device")]
FAMILY_KEY_FIELDS = [c for c in CELL_KEY_FIELDS if c != "S"]
#: Fields added to the cell key after rows were first recorded: left out of the key while they
#: hold these defaults, so the ``cell_id`` of every earlier row (which lacks them) stays valid.
KEY_DEFAULTS = {"inputs": "random", "n_gpus": 1}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _at_default(field: str, value) -> bool:
    if field not in KEY_DEFAULTS:
        return False
    return _fmt(value) in ("null", _fmt(KEY_DEFAULTS[field]))


def key_of(row, fields) -> str:
    """Stable text key ``field=value|...`` of a row or spec mapping over ``fields`` (the fields of
    :data:`KEY_DEFAULTS` are left out while at their default or missing)."""
    return "|".join(f"{f}={_fmt(row.get(f))}" for f in fields if not _at_default(f, row.get(f)))


def cell_id(row) -> str:
    return key_of(row, CELL_KEY_FIELDS)


def family_id(row) -> str:
    return key_of(row, FAMILY_KEY_FIELDS)


def empty_metrics() -> dict:
    """Every metric column present, unmeasured (NaN / empty)."""
    row = {c: math.nan for c in METRIC_COLUMNS}
    row.update(status="error", reason="", note="", timing_method="", matmul_dtype="")
    return row


def join_notes(*notes) -> str:
    """``"; "``-joined non-empty notes (NaN / None / "" dropped)."""
    out = []
    for n in notes:
        if n is None or (isinstance(n, float) and math.isnan(n)) or str(n) == "":
            continue
        out.append(str(n))
    return "; ".join(out)
