"""What every figure shares: clean input rows, colours, panels with the legend outside the data,
log2 S axes, the interpreter mark, saving.

Rows reach the figures through :func:`clean_tables`: numeric columns become numbers (text that
is not a number becomes NaN), text columns become strings, and rows without a path, model, S
or status are dropped with a :class:`FigureWarning` — so a bad row is skipped, never a crash.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from ..tables import path_sort_key  # noqa: E402

PATH_COLORS = {"stream": "C0", "stream_fp8": "C1", "partition_merge": "C2", "chunked_torch": "C3",
               "materialize_fused": "C4", "materialize": "C5", "csa": "C6"}
MODEL_ORDER = ["v4_flash", "v4_pro", "v3_2", "tiny"]
MODEL_LABELS = {"v4_flash": "V4-Flash", "v4_pro": "V4-Pro", "v3_2": "V3.2", "tiny": "tiny (CPU smoke)"}
MODEL_COLORS = {"v4_flash": "C0", "v4_pro": "C3", "v3_2": "C2", "tiny": "C7"}
INTERPRETER_MARK = "Triton interpreter — not a speed"

NUMERIC = ("S", "T", "H", "D", "B", "topk", "ratio", "offset", "chunk_q", "chunk_t", "workspace_bytes", "time_s",
           "time_checked_s", "peak_extra_gib", "peak_alloc_gib", "tflops", "frac_peak", "matmul_tflops",
           "recall_mean", "recall_min", "overlap_vs_materialize", "time_indexer_s", "time_attn_s", "attn_tflops",
           "attn_frac_peak", "n_gpus", "world_size")
TEXT = ("experiment", "kind", "device", "path", "model", "status", "inputs", "attn_impl", "matmul_dtype", "sweep_id")
REQUIRED = ("path", "model", "S", "status")


class FigureWarning(UserWarning):
    """A row or a figure was skipped while drawing (the message says which and why)."""


def clean_table(df: pd.DataFrame, name: str = "table") -> pd.DataFrame:
    """Typed copy of ``df`` (see the module docstring); warns with the number of rows dropped."""
    d = df.copy()
    for c in NUMERIC:
        if c in d:
            d[c] = pd.to_numeric(d[c], errors="coerce")
    for c in TEXT:
        if c in d:
            d[c] = d[c].astype("string")
    if "inputs" in d:
        d["inputs"] = d["inputs"].fillna("random")
    if "n_gpus" in d:
        d["n_gpus"] = d["n_gpus"].fillna(1)
    missing = [c for c in REQUIRED if c not in d]
    if missing:
        warnings.warn(f"{name}: no column {', '.join(missing)}; its rows are not drawn", FigureWarning, stacklevel=2)
        return d.iloc[0:0]
    bad = d[list(REQUIRED)].isna().any(axis=1)
    if bad.any():
        warnings.warn(f"{name}: {int(bad.sum())} row(s) without a path, model, S or status skipped",
                      FigureWarning, stacklevel=2)
    return d[~bad].reset_index(drop=True)


def clean_tables(tables: dict) -> dict:
    return {k: clean_table(v, f"{k}.csv") for k, v in tables.items() if v is not None and len(v)}


def paths_of(df: pd.DataFrame) -> list[str]:
    return sorted(df["path"].dropna().unique(), key=path_sort_key)


def models_of(df: pd.DataFrame) -> list[str]:
    ms = list(df["model"].dropna().unique())
    return sorted(ms, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m))


def model_label(m: str) -> str:
    return MODEL_LABELS.get(m, str(m))


def panels(n: int, *, width: float = 5.2, height: float = 4.0, rows: int = 1, sharey: bool = False):
    """``(fig, axes)`` with ``n`` panels per row (constrained layout: labels never overlap)."""
    fig, axes = plt.subplots(rows, n, figsize=(max(7.0, width * n), height * rows), squeeze=False,
                             layout="constrained", sharey=sharey)
    return fig, axes


def legend_outside(fig, axes, *, extra: list | None = None, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the panels, from the labelled artists of ``axes``
    (first occurrence of each label) plus ``extra`` handles."""
    handles, labels = [], []
    for ax in list(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    for h in extra or []:
        if h.get_label() not in labels:
            handles.append(h)
            labels.append(h.get_label())
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(4, len(handles)), fontsize=8,
                   frameon=False)


def oom_handle() -> Line2D:
    return Line2D([], [], color="0.3", marker="x", ls="none", ms=8, mew=2, label="× out of memory (drawn at the top)")


def s_label(v: int) -> str:
    v = int(v)
    if v >= 1 << 20:
        return f"{v >> 20}M" if v % (1 << 20) == 0 else f"{v / (1 << 20):g}M"
    if v >= 1024:
        return f"{v >> 10}K" if v % 1024 == 0 else f"{v / 1024:g}K"
    return str(v)


def log2_x(ax, values, label: str = "S (queries)") -> None:
    vals = sorted({int(v) for v in values if pd.notna(v)})
    ax.set_xscale("log", base=2)
    if vals:
        ax.set_xticks(vals)
        ax.set_xticklabels([s_label(v) for v in vals], rotation=45, fontsize=7)
        ax.minorticks_off()
    ax.set_xlabel(label)


def plain_log_y(ax) -> None:
    """Log y axis with ticks at 1, 2, 5 × 10^n labelled 0.2, 1, 5 rather than 2×10⁻¹, 10⁰, 5×10⁰."""
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def commits_of(df: pd.DataFrame) -> str:
    """The short commits the rows were measured at (``+dirty`` for uncommitted trees)."""
    if "git_commit" not in df:
        return ""
    dirty = df["git_dirty"].astype(str).str.lower().eq("true") if "git_dirty" in df else False
    keys = (df["git_commit"].astype(str).str[:7] + pd.Series(dirty, index=df.index).map({True: "+dirty", False: ""}))
    keys = sorted(k for k in keys.dropna().unique() if k and not k.startswith(("nan", "<NA>", "unknown")))
    return ", ".join(keys)


def newest_commit_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the commit measured last (by row date): one figure series never joins rows of
    several commits (the report's one-commit rule)."""
    if df.empty or "git_commit" not in df or "date" not in df:
        return df
    key = df["git_commit"].astype(str)
    newest = key[df["date"].astype(str) == df["date"].astype(str).max()].iloc[0]
    return df[key == newest]


def is_interpreter(tables: dict) -> bool:
    """True when no row was measured on a GPU (CPU smoke rows: the Triton interpreter)."""
    devices = set()
    for t in tables.values():
        if "device" in t:
            devices |= set(t["device"].dropna().astype(str))
    return "cuda" not in devices


def mark_interpreter(fig) -> None:
    """A visible stamp: these times come from the Triton interpreter on a CPU, not a GPU."""
    size = min(26.0, 2.6 * fig.get_figwidth())
    fig.text(0.5, 0.5, INTERPRETER_MARK, fontsize=size, color="red", alpha=0.25, rotation=20,
             ha="center", va="center", transform=fig.transFigure, zorder=10, in_layout=False)
    title = fig.get_suptitle()
    fig.suptitle((title + "\n" if title else "") + f"[{INTERPRETER_MARK}]", color="red", fontsize=11)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
