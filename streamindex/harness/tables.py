"""Markdown tables built from current result rows (pandas in, text out)."""
from __future__ import annotations

import math

import pandas as pd

PATH_ORDER = ["stream", "stream_fp8", "partition_merge", "chunked_torch", "materialize_fused", "materialize", "csa"]
RATIO_BASELINES = ["partition_merge", "chunked_torch", "materialize_fused"]


def _num(x, fmt: str) -> str:
    try:
        if x is None or math.isnan(float(x)):
            return "–"
    except (TypeError, ValueError):
        return "–"
    return format(float(x), fmt)


def fmt_time(t) -> str:
    try:
        t = float(t)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(t):
        return "–"
    return f"{t * 1e3:,.1f} ms" if t < 1 else f"{t:,.2f} s"


def path_sort_key(p: str) -> int:
    return PATH_ORDER.index(p) if p in PATH_ORDER else len(PATH_ORDER)


def cell_text(row) -> str:
    """``time / peak_extra`` of an ok row, else its status."""
    if row is None:
        return ""
    if row["status"] != "ok":
        return str(row["status"]).upper()
    return f"{fmt_time(row['time_s'])} / {_num(row['peak_extra_gib'], '.2f')} GiB"


def bench_table(df: pd.DataFrame) -> str:
    """Every path at each (model, S): time_s, tflops, frac_peak, peak_extra, and the speed-up of
    ``stream`` over partition_merge, chunked_torch and materialize_fused (their time / stream's)."""
    if df.empty:
        return "(no rows)"
    head = ("| model | S | path | status | time | TFLOP/s | frac_peak | peak_extra GiB | "
            + " | ".join(f"stream vs {b}" for b in RATIO_BASELINES) + " |")
    lines = [head, "|" + "---|" * (8 + len(RATIO_BASELINES))]
    d = df.copy()
    d["_p"] = d["path"].map(path_sort_key)
    for (model, S), g in d.sort_values(["model", "S", "_p"]).groupby(["model", "S"], sort=False):
        ok = g[g["status"] == "ok"].set_index("path")
        st = ok["time_s"].get("stream") if "stream" in ok.index else None
        for _, r in g.iterrows():
            ratios = []
            for b in RATIO_BASELINES:
                if r["path"] == "stream" and st and b in ok.index:
                    ratios.append(f"{float(ok['time_s'][b]) / float(st):.2f}×")
                else:
                    ratios.append("")
            status = r["status"] if r["status"] == "ok" else f"**{r['status']}**"
            lines.append(f"| {model} | {int(S):,} | {r['path']} | {status} | {fmt_time(r['time_s'])} | "
                         f"{_num(r['tflops'], '.1f')} | {_num(r['frac_peak'], '.3f')} | "
                         f"{_num(r['peak_extra_gib'], '.2f')} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def scaling_table(df: pd.DataFrame, model: str) -> str:
    """S down, paths across: ``time / peak_extra`` or the status."""
    d = df[df["model"] == model]
    if d.empty:
        return "(no rows)"
    paths = sorted(d["path"].unique(), key=path_sort_key)
    lines = ["| S | " + " | ".join(paths) + " |", "|---:|" + "---|" * len(paths)]
    for S, g in d.groupby("S"):
        by = {r["path"]: r for _, r in g.iterrows()}
        lines.append(f"| {int(S):,} | " + " | ".join(cell_text(by.get(p)) for p in paths) + " |")
    return "\n".join(lines)
