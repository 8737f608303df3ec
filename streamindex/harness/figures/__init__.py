"""Figures from result rows (matplotlib, Agg backend). :data:`FIGURES` maps each PNG's file name
to the function that draws it from ``{experiment: rows}`` and the anchors; a function returns
None when the rows it needs are not there (nothing is invented). :func:`draw_all` writes every
figure it can, never stops on a bad row or a failing figure (it warns with
:class:`FigureWarning` and goes on), and stamps figures of CPU-only rows "Triton interpreter —
not a speed"."""
from __future__ import annotations

import warnings
from pathlib import Path

from ..claims.anchors import Anchors, load_anchors
from .csa import e2e_figure
from .indexer import scaling_peak_figure, scaling_time_figure, speedup_figure, throughput_figure, time_peak_vs_k_figure
from .recall import recall_heatmap_figure, recall_vs_S_figure
from .robustness import robustness_figure
from .scale_out import scale_out_figure
from .style import FigureWarning, clean_tables, is_interpreter, mark_interpreter, save

FIGURES = {
    "scaling_time.png": scaling_time_figure,
    "scaling_peak.png": scaling_peak_figure,
    "speedup_vs_partition_merge.png": speedup_figure,
    "throughput.png": throughput_figure,
    "recall_vs_S.png": recall_vs_S_figure,
    "recall_heatmap_chunks.png": recall_heatmap_figure,
    "time_peak_vs_k.png": time_peak_vs_k_figure,
    "robustness.png": robustness_figure,
    "e2e_csa.png": e2e_figure,
    "scale_out.png": scale_out_figure,
}


def _anchors_or_none() -> Anchors | None:
    try:
        return load_anchors()
    except (OSError, KeyError, TypeError, ValueError) as exc:
        warnings.warn(f"anchors not loaded ({exc}); figures drawn without reference lines", FigureWarning,
                      stacklevel=3)
        return None


def draw(name: str, tables: dict, anchors: Anchors | None = None):
    """The figure ``name`` (a key of :data:`FIGURES`) from cleaned rows, or None."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    tables = clean_tables(tables)
    fig = FIGURES[name](tables, anchors)
    if fig is not None and is_interpreter(tables):
        mark_interpreter(fig)
    return fig


def draw_all(tables: dict, out_dir, anchors: Anchors | None = None) -> list[Path]:
    """Write every figure whose rows exist to ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    anchors = anchors if anchors is not None else _anchors_or_none()
    tables = clean_tables(tables)
    interp = is_interpreter(tables)
    written = []
    for name, fn in FIGURES.items():
        try:
            fig = fn(tables, anchors)
        except Exception as exc:  # a figure must never stop the report: say which and why
            warnings.warn(f"{name} not drawn: {type(exc).__name__}: {exc}", FigureWarning, stacklevel=2)
            continue
        if fig is None:
            continue
        if interp:
            mark_interpreter(fig)
        written.append(save(fig, out_dir / name))
    return written


__all__ = ["FIGURES", "FigureWarning", "draw", "draw_all"]
