"""Recall figures: tie-aware recall vs S per path, and the minimum recall over chunk sizes."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import PATH_COLORS, legend_outside, log2_x, model_label, models_of, panels, paths_of


def recall_vs_S_figure(tables: dict, anchors=None):
    """Minimum (solid) and mean (dotted) tie-aware recall vs S, a line per path, a panel per model
    (``recall`` table). Paths are drawn slightly apart along S so that equal values stay visible."""
    df = tables.get("recall")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & df["recall_min"].notna()]
    if d.empty:
        return None
    models = models_of(d)
    fig, axes = panels(len(models), sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        g = d[d["model"] == model]
        paths = paths_of(g)
        for i, p in enumerate(paths):
            gp = g[g["path"] == p].sort_values("S")
            x = gp["S"] * 2 ** (0.12 * (i - (len(paths) - 1) / 2))
            ax.plot(x, gp["recall_min"], "o-", color=PATH_COLORS.get(p), label=p, ms=4)
            ax.plot(x, gp["recall_mean"], ":", color=PATH_COLORS.get(p))
        if (g["recall_min"] >= 1.0).all():
            ax.text(0.5, 0.08, f"all {len(g)} cells: recall 1.0", transform=ax.transAxes, ha="center", fontsize=9)
            ax.set_ylim(0.99, 1.005)
        log2_x(ax, g["S"])
        ax.set_title(model_label(model))
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("tie-aware recall vs the fp64 oracle\n(min solid, mean dotted; sampled rows)")
    fig.suptitle("Recall vs S")
    legend_outside(fig, axes[0])
    return fig


def _short(v) -> str:
    v = float(v)
    if v >= 1 << 20 and v % (1 << 20) == 0:
        return f"{int(v) >> 20}Mi"
    return str(int(v))


def _heat(ax, piv: pd.DataFrame, title: str, xlabel: str, ylabel: str):
    vals = piv.values.astype(float)
    im = ax.imshow(vals, cmap="viridis", vmin=min(0.99, float(np.nanmin(vals))), vmax=1.0, origin="lower",
                   aspect="auto")
    ax.set_xticks(range(len(piv.columns)), [_short(c) for c in piv.columns], fontsize=8)
    ax.set_yticks(range(len(piv.index)), [_short(c) for c in piv.index], fontsize=8)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.4f}", ha="center", va="center", fontsize=7, color="w" if v < 0.999 else "k")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return im


def recall_heatmap_figure(tables: dict, anchors=None):
    """Minimum recall over chunk sizes (``design_space``): partition_merge (chunk_q × chunk_t),
    stream (chunk_q × workspace bytes)."""
    df = tables.get("design_space")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & df["recall_min"].notna()]
    specs = [("partition_merge", "chunk_t", "partition_merge: min recall"),
             ("stream", "workspace_bytes", "stream: min recall")]
    piv = []
    for path, col, title in specs:
        g = d[(d["path"] == path) & d["chunk_q"].notna() & d[col].notna()]
        if len(g):
            piv.append((g.pivot_table(index="chunk_q", columns=col, values="recall_min", aggfunc="min"), title, col))
    if not piv:
        return None
    S = sorted({int(s) for s in d["S"].dropna()})
    fig, axes = panels(len(piv), width=5.0, height=4.0)
    im = None
    for ax, (p, title, col) in zip(axes[0], piv, strict=True):
        im = _heat(ax, p, title, col, "chunk_q")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="min tie-aware recall")
    fig.suptitle("Minimum recall over chunk sizes (design space, S = " + ", ".join(f"{s:,}" for s in S) + ")")
    return fig
