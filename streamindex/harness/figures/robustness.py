"""Robustness (``robustness`` rows): time of each input kind over random inputs, per model and S,
and the recall of every cell."""
from __future__ import annotations

import numpy as np

from .style import legend_outside, model_label, models_of, panels, s_label

KIND_COLORS = {"ties8": "C3", "recency": "C2", "random": "C0"}


def robustness_figure(tables: dict, anchors=None):
    """Top: time over the random-input time of the same (path, model, S) for ``ties8`` and
    ``recency`` (bars; the dashed line = the ties8 goal from the anchors); bottom: the minimum
    tie-aware recall of each cell, per input kind. A column per path."""
    df = tables.get("robustness")
    if df is None or df.empty or "inputs" not in df:
        return None
    d = df[(df["status"] == "ok") & df["time_s"].notna()]
    if d.empty:
        return None
    paths = [p for p in ("stream", "stream_fp8") if p in set(d["path"])] or sorted(d["path"].unique())
    kinds = [k for k in ("ties8", "recency") if k in set(d["inputs"])]
    fig, axes = panels(len(paths), rows=2, width=6.0, height=3.4)
    limit = anchors.get("goals.no_cliff.ties8_max_ratio") if anchors is not None else None
    for col, path in enumerate(paths):
        g = d[d["path"] == path]
        cells = [(m, int(s)) for m in models_of(g) for s in sorted(g[g["model"] == m]["S"].unique())]
        x = np.arange(len(cells))
        ax = axes[0][col]
        base = {(r["model"], int(r["S"])): r["time_s"] for _, r in g[g["inputs"] == "random"].iterrows()}
        width = 0.8 / max(1, len(kinds))
        for i, kind in enumerate(kinds):
            t = {(r["model"], int(r["S"])): r["time_s"] for _, r in g[g["inputs"] == kind].iterrows()}
            ratio = [t[c] / base[c] if c in t and c in base else np.nan for c in cells]
            ax.bar(x + (i - (len(kinds) - 1) / 2) * width, ratio, width, color=KIND_COLORS.get(kind),
                   label=f"{kind} / random")
        ax.axhline(1.0, color="k", lw=0.8)
        if limit is not None:
            ax.axhline(float(limit), color="k", ls="--", lw=1, label=f"ties8 goal ≤ {float(limit):g}×")
        ax.set_xticks(x, [f"{model_label(m)}\n{s_label(s)}" for m, s in cells], fontsize=7)
        ax.set_ylabel("time / random-input time")
        ax.set_title(f"{path}: time by input kind", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax2 = axes[1][col]
        width = 0.8 / 3
        for i, kind in enumerate(["random"] + kinds):
            rec = {(r["model"], int(r["S"])): r["recall_min"] for _, r in g[g["inputs"] == kind].iterrows()}
            y = [rec.get(c, np.nan) for c in cells]
            ax2.plot(x + (i - 1) * width, y, "o", color=KIND_COLORS.get(kind), label=f"recall: {kind}")
        ax2.set_xticks(x, [f"{model_label(m)}\n{s_label(s)}" for m, s in cells], fontsize=7)
        lo = np.nanmin(g["recall_min"].values) if g["recall_min"].notna().any() else 1.0
        ax2.set_ylim(min(0.99, lo - 0.002), 1.002)
        ax2.set_ylabel("min tie-aware recall")
        ax2.set_title(f"{path}: recall by input kind", fontsize=10)
        ax2.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Robustness: the same selection across models and tie structures")
    legend_outside(fig, list(axes[0]) + list(axes[1]))
    return fig
