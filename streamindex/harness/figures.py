"""Figures from current result rows (matplotlib, Agg backend). Each ``plot_*`` takes the
``{experiment: rows}`` dict of :func:`results.load_results` and an output folder, writes one PNG
and returns its path — or ``None`` when the rows it needs are not there (nothing is invented)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import path_sort_key  # noqa: E402

COLORS = {"stream": "C0", "stream_fp8": "C1", "partition_merge": "C2", "chunked_torch": "C3",
          "materialize_fused": "C4", "materialize": "C5", "csa": "C6"}


def _save(fig, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _f(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce")


def _paths(df):
    return sorted(df["path"].dropna().unique(), key=path_sort_key)


def _log2_ticks(ax, values):
    vals = sorted(set(int(v) for v in values))
    ax.set_xscale("log", base=2)
    ax.set_xticks(vals)
    ax.set_xticklabels([f"{v >> 20}M" if v >= 1 << 20 else f"{v >> 10}K" if v >= 1024 else str(v) for v in vals],
                       rotation=45, fontsize=7)


def _per_model_vs_S(df: pd.DataFrame, metric: str, ylabel: str, title: str, out_dir: Path, name: str,
                    published: int | None = None):
    d = df[df["kind"] == "indexer"] if "kind" in df else df
    if d.empty or _f(d, metric).notna().sum() == 0:
        return None
    models = sorted(d["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        g = d[d["model"] == model]
        for p in _paths(g):
            gp = g[g["path"] == p].sort_values("S")
            ok = gp[(gp["status"] == "ok") & _f(gp, metric).notna()]
            c = COLORS.get(p)
            if len(ok):
                ax.plot(ok["S"], _f(ok, metric), "o-", color=c, label=p, ms=4)
            oom = gp[gp["status"] == "oom"]
            if len(oom):
                top = _f(d, metric).max() * 2
                ax.plot(oom["S"], [top] * len(oom), "x", color=c, ms=9, mew=2,
                        label=f"{p}: OOM" if len(ok) else f"{p} (OOM)")
        if published is not None and model == "v4_flash":
            from .claims import PUBLISHED_STREAMINDEX

            pts = sorted(PUBLISHED_STREAMINDEX.items())
            ax.plot([S for S, _ in pts], [v[published] for _, v in pts], "k--", lw=1, ms=3, marker="s",
                    label="StreamIndex (published)")
        ax.set_yscale("log")
        _log2_ticks(ax, g["S"])
        ax.set_xlabel("S (queries)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} — {model}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out_dir, name)


def timed_rows(tables: dict) -> pd.DataFrame | None:
    """Every timed indexer cell from ``scaling``, then ``bench``, then ``recall`` (the first table
    that has a (model, path, S) wins), so a figure shows all that was measured. These experiments
    run each path at its configured knobs; knob sweeps live in ``design_space``, not read here."""
    frames = []
    for rank, name in enumerate(("scaling", "bench", "recall")):
        df = tables.get(name)
        if df is None or df.empty:
            continue
        d = df[(df["kind"] == "indexer") & df["status"].isin(["ok", "oom"])].copy()
        d = d[(d["status"] == "oom") | _f(d, "time_s").notna()]
        d["_rank"] = rank
        frames.append(d)
    if not frames:
        return None
    d = pd.concat(frames, ignore_index=True).sort_values("_rank")
    return d.drop_duplicates(["model", "path", "S"], keep="first").drop(columns="_rank")


def plot_scaling_time(tables: dict, out_dir: Path):
    """log-log time vs S per path and model (scaling, bench and recall rows); x at the top = OOM;
    dashed = the published StreamIndex times (V4-Flash)."""
    df = timed_rows(tables)
    return None if df is None else _per_model_vs_S(df, "time_s", "time per call (s)", "time vs S",
                                                  out_dir, "scaling_time.png", published=0)


def plot_scaling_peak(tables: dict, out_dir: Path):
    """log-log peak_extra vs S per path and model; x at the top = out of memory; dashed = the
    published StreamIndex peak (V4-Flash)."""
    df = timed_rows(tables)
    return None if df is None else _per_model_vs_S(df, "peak_extra_gib", "peak HBM beyond inputs (GiB)",
                                                  "peak_extra vs S", out_dir, "scaling_peak.png", published=1)


def plot_speedup(tables: dict, out_dir: Path):
    """Speed-up of every path over ``partition_merge`` (its time / the path's) vs S."""
    df = timed_rows(tables)
    if df is None or df.empty:
        return None
    ok = df[df["status"] == "ok"]
    base = ok[ok["path"] == "partition_merge"]
    if base.empty:
        return None
    models = sorted(base["model"].unique())   # a model with no partition_merge row has nothing to plot
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        b = base[base["model"] == model].set_index("S")["time_s"].astype(float)
        for p in _paths(ok[ok["model"] == model]):
            g = ok[(ok["model"] == model) & (ok["path"] == p)].set_index("S")["time_s"].astype(float)
            common = g.index.intersection(b.index)
            if len(common):
                common = sorted(common)
                ax.plot(common, (b[common] / g[common]).values, "o-", color=COLORS.get(p), label=p, ms=4)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        _log2_ticks(ax, ok[ok["model"] == model]["S"])
        ax.set_xlabel("S (queries)")
        ax.set_ylabel("speed-up over partition_merge (×)")
        ax.set_title(f"speed-up vs the paper's algorithm — {model}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out_dir, "speedup_vs_partition_merge.png")


def plot_recall_vs_S(tables: dict, out_dir: Path):
    """Min and mean tie-aware recall vs S per path (recall experiment)."""
    df = tables.get("recall")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & _f(df, "recall_min").notna()]
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in _paths(d):
        g = d[d["path"] == p].sort_values("S")
        ax.plot(g["S"], _f(g, "recall_min"), "o-", color=COLORS.get(p), label=f"{p} min", ms=4)
        ax.plot(g["S"], _f(g, "recall_mean"), ".:", color=COLORS.get(p), label=f"{p} mean")
    _log2_ticks(ax, d["S"])
    ax.set_xlabel("S (queries)")
    ax.set_ylabel("tie-aware recall vs fp64 oracle (sampled rows)")
    ax.set_title("recall vs S")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out_dir, "recall_vs_S.png")


def _heat(ax, piv: pd.DataFrame, title: str, xlabel: str, ylabel: str):
    im = ax.imshow(piv.values.astype(float), cmap="viridis", vmin=min(0.99, np.nanmin(piv.values)), vmax=1.0,
                   origin="lower", aspect="auto")
    ax.set_xticks(range(len(piv.columns)))
    ax.set_xticklabels([_short(c) for c in piv.columns], fontsize=8)
    ax.set_yticks(range(len(piv.index)))
    ax.set_yticklabels([_short(c) for c in piv.index], fontsize=8)
    for i in range(piv.shape[0]):
        for j in range(piv.shape[1]):
            v = piv.values[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.4f}", ha="center", va="center", fontsize=7, color="w" if v < 0.999 else "k")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return im


def _short(v) -> str:
    v = float(v)
    if v >= 1 << 20 and v % (1 << 20) == 0:
        return f"{int(v) >> 20}Mi"
    return str(int(v))


def plot_recall_heatmaps(tables: dict, out_dir: Path):
    """Min recall over chunk sizes: partition_merge (chunk_q × chunk_t), stream (chunk_q × workspace)."""
    df = tables.get("design_space")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & _f(df, "recall_min").notna()]
    panels = []
    pm = d[(d["path"] == "partition_merge") & _f(d, "chunk_q").notna() & _f(d, "chunk_t").notna()]
    if len(pm):
        panels.append((pm.pivot_table(index="chunk_q", columns="chunk_t", values="recall_min", aggfunc="min"),
                       "partition_merge: min recall", "chunk_t", "chunk_q"))
    st = d[(d["path"] == "stream") & _f(d, "chunk_q").notna() & _f(d, "workspace_bytes").notna()]
    if len(st):
        panels.append((st.pivot_table(index="chunk_q", columns="workspace_bytes", values="recall_min", aggfunc="min"),
                       "stream: min recall", "workspace_bytes", "chunk_q"))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (piv, title, xl, yl) in zip(axes[0], panels):
        im = _heat(ax, piv, title, xl, yl)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    return _save(fig, out_dir, "recall_heatmap_chunks.png")


def plot_time_peak_vs_k(tables: dict, out_dir: Path):
    """Time and peak_extra vs topk per path (design_space, default chunks, the most common dims)."""
    df = tables.get("design_space")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & _f(df, "time_s").notna()]
    d = d[_f(d, "chunk_q").isna() & _f(d, "chunk_t").isna() & _f(d, "workspace_bytes").isna()]
    if d.empty:
        return None
    H, D = d["H"].mode().iloc[0], d["D"].mode().iloc[0]
    d = d[(d["H"] == H) & (d["D"] == D)]
    if d["topk"].nunique() < 2:
        return None
    S = int(d["S"].max())
    d = d[d["S"] == S]
    metrics = [("time_s", "time per call (s)")]
    if (_f(d, "peak_extra_gib") > 0).any():
        metrics.append(("peak_extra_gib", "peak HBM beyond inputs (GiB)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    for ax, (col, yl) in zip(axes[0], metrics):
        for p in _paths(d):
            g = d[d["path"] == p].sort_values("topk")
            ax.plot(g["topk"], _f(g, col), "o-", color=COLORS.get(p), label=p)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("topk")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"time and peak vs k at S={S:,} (H={int(H)}, D={int(D)})")
    return _save(fig, out_dir, "time_peak_vs_k.png")


def plot_e2e(tables: dict, out_dir: Path):
    """CSA step time vs S per model and attention kernel, with the indexer's share dashed."""
    df = tables.get("e2e")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & _f(df, "time_s").notna()]
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, ((model, impl), g) in enumerate(d.groupby(["model", "attn_impl"])):
        g = g.sort_values("S")
        ax.plot(g["S"], _f(g, "time_s"), "o-", color=f"C{i}", label=f"{model} {impl}: CSA step")
        if _f(g, "time_indexer_s").notna().any():
            ax.plot(g["S"], _f(g, "time_indexer_s"), "--", color=f"C{i}", alpha=0.6, label=f"{model} {impl}: indexer")
    oom = df[df["status"] == "oom"]
    if len(oom):
        ax.plot(oom["S"], [_f(d, "time_s").max() * 2] * len(oom), "kx", label="OOM")
    ax.set_yscale("log")
    _log2_ticks(ax, df["S"])
    ax.set_xlabel("S (queries)")
    ax.set_ylabel("time (s)")
    ax.set_title("CSA step: streaming indexer + sparse attention")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "e2e_csa.png")


FIGURES = [plot_scaling_time, plot_scaling_peak, plot_speedup, plot_recall_vs_S, plot_recall_heatmaps,
           plot_time_peak_vs_k, plot_e2e]


def draw_all(tables: dict, out_dir) -> list[Path]:
    """Every figure whose rows exist; returns the written paths."""
    out_dir = Path(out_dir)
    return [p for fn in FIGURES if (p := fn(tables, out_dir)) is not None]
