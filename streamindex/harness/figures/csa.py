"""The CSA step (``e2e`` rows): the indexer's time, the attention's time with TileLang against the
Triton fallback, and the attention's own rate against the peers' sparse-attention kernels."""
from __future__ import annotations

import pandas as pd

from .style import (MODEL_COLORS, commits_of, legend_outside, log2_x, model_label, models_of,
                    newest_commit_rows, panels)

IMPL_STYLE = {"tilelang": dict(ls="-", marker="o"), "triton": dict(ls="--", marker="s")}


def _bf16_rate(d: pd.DataFrame) -> float | None:
    if "matmul_dtype" not in d:
        return None
    rate = d[d["matmul_dtype"].fillna("").str.contains("bf16")]["matmul_tflops"].median()
    return None if pd.isna(rate) else float(rate)


def e2e_figure(tables: dict, anchors=None):
    """Three panels vs S: (a) the indexer's time per model; (b) the attention's time, TileLang
    (solid) against Triton (dashed); (c) the attention's TFLOP/s with the goal and the peers'
    rates, right axis = fraction of the bf16 matmul rate measured in the sweep. Each model's rows
    are those of its newest commit."""
    df = tables.get("e2e")
    if df is None or df.empty:
        return None
    d = df[(df["status"] == "ok") & df["time_s"].notna()]
    if "n_gpus" in d:
        d = d[d["n_gpus"] == 1]
    if d.empty:
        return None
    fig, axes = panels(3, width=4.6, height=4.2)
    ax_idx, ax_att, ax_rate = axes[0]
    models = models_of(d)
    for model in models:
        g = newest_commit_rows(d[d["model"] == model])
        color = MODEL_COLORS.get(model)
        idx = g.groupby("S")["time_indexer_s"].median().dropna()
        if len(idx):
            at = commits_of(g)
            ax_idx.plot(idx.index, idx.values, "o-", color=color, ms=4,
                        label=f"{model_label(model)} indexer" + (f" (rows @ {at})" if at else ""))
        for impl, gi in g.groupby("attn_impl"):
            gi = gi.sort_values("S")
            style = IMPL_STYLE.get(str(impl), dict(ls=":", marker="^"))
            label = f"{model_label(model)} attention, {impl}"
            ax_att.plot(gi["S"], gi["time_attn_s"], color=color, ms=4, label=label, **style)
            ax_rate.plot(gi["S"], gi["attn_tflops"], color=color, ms=4, label=label, **style)
    for ax, title, yl in ((ax_idx, "(a) indexer (stream)", "time (s)"), (ax_att, "(b) sparse attention", "time (s)")):
        ax.set_yscale("log")
        log2_x(ax, d["S"])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    log2_x(ax_rate, d["S"])
    ax_rate.set_title("(c) attention rate", fontsize=10)
    ax_rate.set_ylabel("attention TFLOP/s")
    ax_rate.grid(True, alpha=0.3)
    extra = []
    if anchors is not None:
        goal = anchors.get("goals.csa.min_attn_tflops")
        tl, fm = anchors.get("peers.tilelang_sparse_mla"), anchors.get("peers.flashmla_sparse_prefill")
        if goal is not None:
            extra.append(ax_rate.axhline(float(goal), color="k", lw=1, label=f"goal {float(goal):g} TFLOP/s"))
        if tl:
            extra.append(ax_rate.axhspan(float(tl["tflops_min"]), float(tl["tflops_max"]), color="0.6", alpha=0.3,
                                         label=f"{tl['label']} ({tl['tflops_min']}–{tl['tflops_max']})"))
        if fm:
            extra.append(ax_rate.axhline(float(fm["tflops"]), color="0.3", ls=":", lw=1.2,
                                         label=f"{fm['label']} ({fm['tflops']}, H800)"))
    ax_rate.set_ylim(bottom=0)
    rate = _bf16_rate(d)
    if rate:
        sec = ax_rate.secondary_yaxis("right", functions=(lambda x, r=rate: x / r, lambda f, r=rate: f * r))
        sec.set_ylabel(f"fraction of the bf16 matmul rate ({rate:.0f})")
    fig.suptitle("CSA step: indexer + sparse attention (TileLang solid, Triton fallback dashed)")
    legend_outside(fig, axes[0], ncol=3)
    return fig
