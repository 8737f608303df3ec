"""Indexer figures: time and peak vs S for every path and model, the speed-up over the paper's
algorithm, the useful-FLOP rate of the streaming paths, and time / peak vs k.

Each ``*_figure(tables, anchors)`` returns a matplotlib figure, or None when its rows are absent.
"""
from __future__ import annotations

import pandas as pd

from ..tables import frac_peak_denominator
from .style import (
    MODEL_COLORS,
    PATH_COLORS,
    legend_outside,
    log2_x,
    model_label,
    models_of,
    oom_handle,
    panels,
    paths_of,
    plain_log_y,
)

TIMED = ("scaling", "bench", "recall", "robustness")


def timed_rows(tables: dict) -> pd.DataFrame | None:
    """Every plain timed indexer cell (one GPU, random inputs), from ``scaling``, then ``bench``,
    ``recall`` and ``robustness``: the first table that has a (model, path, S) wins. Knob sweeps
    (``design_space``) are not read here."""
    frames = []
    for rank, name in enumerate(TIMED):
        df = tables.get(name)
        if df is None or df.empty:
            continue
        d = df[df["status"].isin(["ok", "oom"])].copy()
        if "kind" in d:
            d = d[d["kind"].fillna("indexer") == "indexer"]
        if "inputs" in d:
            d = d[d["inputs"] == "random"]
        if "n_gpus" in d:
            d = d[d["n_gpus"] == 1]
        d = d[(d["status"] == "oom") | d["time_s"].notna()]
        d["_rank"] = rank
        frames.append(d)
    if not frames:
        return None
    d = pd.concat(frames, ignore_index=True).sort_values("_rank", kind="stable")
    d = d.drop_duplicates(["model", "path", "S"], keep="first").drop(columns="_rank")
    return d if len(d) else None


def _published(anchors, key: str):
    """``(model, [(S, value)])`` of the published StreamIndex table (``time_s`` or peak)."""
    if anchors is None:
        return None, []
    pub = anchors.get("published.streamindex")
    if not pub:
        return None, []
    pts = [(int(p["S"]), float(p[key] if key in p else p["peak_gb"])) for p in pub["points"]]
    return pub.get("model"), sorted(pts)


def _per_model(df: pd.DataFrame, metric: str, ylabel: str, title: str, published=None):
    d = df[df[metric].notna() | (df["status"] == "oom")]
    if d.empty or d[metric].notna().sum() == 0:
        return None
    models = models_of(d)
    fig, axes = panels(len(models))
    oom_seen = False
    pub_model, pts = published or (None, [])
    for ax, model in zip(axes[0], models, strict=True):
        g = d[d["model"] == model]
        top = g[metric].max() * 2
        for p in paths_of(g):
            gp = g[g["path"] == p].sort_values("S")
            ok = gp[(gp["status"] == "ok") & gp[metric].notna()]
            if len(ok):
                ax.plot(ok["S"], ok[metric], "o-", color=PATH_COLORS.get(p), label=p, ms=4)
            oom = gp[gp["status"] == "oom"]
            if len(oom):
                oom_seen = True
                ax.plot(oom["S"], [top] * len(oom), "x", color=PATH_COLORS.get(p), ms=9, mew=2,
                        label=p if ok.empty else "_")
        if model == pub_model and pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], "k--", lw=1, ms=3, marker="s",
                    label="StreamIndex (published)")
        ax.set_yscale("log")
        log2_x(ax, g["S"])
        ax.set_ylabel(ylabel)
        ax.set_title(model_label(model))
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    legend_outside(fig, axes[0], extra=[oom_handle()] if oom_seen else None)
    return fig


def scaling_time_figure(tables: dict, anchors=None):
    """Time per call vs S (log-log), a panel per model; × at the top = out of memory; dashed =
    the published StreamIndex times."""
    df = timed_rows(tables)
    return None if df is None else _per_model(df, "time_s", "time per call (s)", "Time per call vs S",
                                              _published(anchors, "time_s"))


def scaling_peak_figure(tables: dict, anchors=None):
    """Peak HBM beyond the inputs vs S (log-log), a panel per model; dashed = published."""
    df = timed_rows(tables)
    return None if df is None else _per_model(df, "peak_extra_gib", "peak HBM beyond the inputs (GiB)",
                                              "Peak memory beyond the inputs vs S", _published(anchors, "peak_gb"))


def speedup_figure(tables: dict, anchors=None):
    """Speed-up of every path over ``partition_merge`` (its time / the path's) vs S, per model
    that has ``partition_merge`` rows."""
    df = timed_rows(tables)
    if df is None:
        return None
    ok = df[(df["status"] == "ok") & df["time_s"].notna()]
    base = ok[ok["path"] == "partition_merge"]
    if base.empty:
        return None
    models = models_of(base)
    fig, axes = panels(len(models))
    for ax, model in zip(axes[0], models, strict=True):
        b = base[base["model"] == model].groupby("S")["time_s"].first()
        om = ok[ok["model"] == model]
        shown = set()
        for p in paths_of(om):
            if p == "partition_merge":
                continue
            t = om[om["path"] == p].groupby("S")["time_s"].first()
            common = sorted(set(t.index) & set(b.index))
            if common:
                ax.plot(common, (b[common] / t[common]).values, "o-", color=PATH_COLORS.get(p), label=p, ms=4)
                shown |= set(common)
        ax.axhline(1.0, color="k", lw=0.8, label="partition_merge (1×)")
        ax.set_yscale("log")
        plain_log_y(ax)
        log2_x(ax, sorted(shown) or b.index)
        ax.set_ylabel("speed-up over partition_merge (×)")
        ax.set_title(model_label(model))
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Speed-up over the paper's algorithm (our partition_merge)")
    legend_outside(fig, axes[0])
    return fig


def throughput_figure(tables: dict, anchors=None):
    """Useful TFLOP/s of ``stream`` (solid) and ``stream_fp8`` (dashed) vs S, a line per model,
    with the bf16 / fp8 matmul rates measured in the sweeps: a cliff shows as a dip."""
    df = timed_rows(tables)
    if df is None:
        return None
    d = df[(df["status"] == "ok") & df["path"].isin(["stream", "stream_fp8"]) & df["tflops"].notna()]
    if d.empty:
        return None
    fig, axes = panels(1, width=7.5, height=4.6)
    ax = axes[0][0]
    for model in models_of(d):
        for p, ls in (("stream", "-"), ("stream_fp8", "--")):
            g = d[(d["model"] == model) & (d["path"] == p)].sort_values("S")
            if len(g):
                ax.plot(g["S"], g["tflops"], ls, marker="o", ms=4, color=MODEL_COLORS.get(model),
                        label=f"{model_label(model)} {p}")
    if "matmul_dtype" in df:
        dens = df.assign(_den=[frac_peak_denominator(r) for _, r in df.iterrows()])
        for den, ls in (("bf16", ":"), ("fp8", "-.")):
            rate = dens[dens["_den"] == den]["matmul_tflops"].median()
            if pd.notna(rate):
                ax.axhline(rate, color="dimgray", ls=ls, lw=1, label=f"{den} matmul rate (measured, {rate:.0f})")
    log2_x(ax, d["S"])
    ax.set_ylabel("useful TFLOP/s (2·H·D per visible pair)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title("Useful-FLOP rate of the streaming paths")
    legend_outside(fig, [ax], ncol=3)
    return fig


def time_peak_vs_k_figure(tables: dict, anchors=None):
    """Time and peak beyond the inputs vs topk per path (``design_space``, default chunks, the
    most common H × D, the largest S)."""
    df = tables.get("design_space")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & df["time_s"].notna()]
    d = d[d[["chunk_q", "chunk_t", "workspace_bytes"]].isna().all(axis=1)]
    if d.empty:
        return None
    H, D = d["H"].mode().iloc[0], d["D"].mode().iloc[0]
    d = d[(d["H"] == H) & (d["D"] == D)]
    if d["topk"].nunique() < 2:
        return None
    S = int(d["S"].max())
    d = d[d["S"] == S]
    metrics = [("time_s", "time per call (s)")]
    if (d["peak_extra_gib"] > 0).any():
        metrics.append(("peak_extra_gib", "peak HBM beyond the inputs (GiB)"))
    fig, axes = panels(len(metrics), width=4.8)
    for ax, (col, yl) in zip(axes[0], metrics, strict=True):
        for p in paths_of(d):
            g = d[d["path"] == p].sort_values("topk")
            ax.plot(g["topk"], g[col], "o-", color=PATH_COLORS.get(p), label=p)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(d["topk"].unique()), [str(int(k)) for k in sorted(d["topk"].unique())])
        ax.minorticks_off()
        ax.set_yscale("log")
        plain_log_y(ax)
        ax.set_xlabel("topk")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Time and peak vs k at S={S:,} (H={int(H)}, D={int(D)})")
    legend_outside(fig, axes[0])
    return fig


__all__ = ["timed_rows", "scaling_time_figure", "scaling_peak_figure", "speedup_figure", "throughput_figure",
           "time_peak_vs_k_figure"]
