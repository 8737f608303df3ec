"""Markdown tables built from result rows (pandas in, text out), and the small formatting and
metric helpers the report, the claims and the figures share.

Every table prints the commit each row was measured at (``@abc1234``; ``+dirty`` when the tree
had uncommitted changes), since tables show the current row of each cell whatever its commit.
"""
from __future__ import annotations

import math

import pandas as pd

PATH_ORDER = ["stream", "stream_fp8", "partition_merge", "chunked_torch", "materialize_fused", "materialize", "csa"]
RATIO_BASELINES = ["partition_merge", "chunked_torch", "materialize_fused"]
INPUT_KINDS = ["random", "ties8", "recency"]


def _num(x, fmt: str) -> str:
    try:
        if x is None or math.isnan(float(x)):
            return "–"
    except (TypeError, ValueError):
        return "–"
    return format(float(x), fmt)


def _f(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def fmt_time(t) -> str:
    """``7.8 ms`` below a second, ``4.14 s`` above; ``–`` when missing."""
    v = _f(t)
    if v is None:
        return "–"
    return f"{v * 1e3:,.1f} ms" if v < 1 else f"{v:,.2f} s"


def commit_key(commit, dirty=False) -> str:
    """``abc1234`` or ``abc1234+dirty``; ``unknown`` when the row has no commit."""
    c = "" if commit is None or (isinstance(commit, float) and math.isnan(commit)) else str(commit).strip()
    c = "unknown" if not c or c.lower() in ("unknown", "nan", "none", "<na>") else c[:7]
    return c + ("+dirty" if str(dirty).strip().lower() in ("true", "1", "yes") else "")


def row_commit(row) -> str:
    return commit_key(row.get("git_commit"), row.get("git_dirty", False))


def _dtype_word(text) -> str | None:
    t = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text).lower()
    if not t or t in ("nan", "<na>"):
        return None
    for word, keys in (("fp8", ("fp8", "e4m3", "float8")), ("bf16", ("bf16", "bfloat16")),
                       ("fp16", ("fp16", "float16", "half")), ("fp32", ("fp32", "float32"))):
        if any(k in t for k in keys):
            return word
    return None


def input_dtype(row) -> str | None:
    """The dtype the path's matmuls run in: ``fp8`` for fp8 paths, else the row's ``dtype``."""
    if "fp8" in str(row.get("path", "")) or _dtype_word(row.get("dtype")) == "fp8":
        return "fp8"
    return _dtype_word(row.get("dtype"))


def frac_peak_denominator(row) -> str | None:
    """The dtype of the matmul rate ``frac_peak`` was divided by (from ``matmul_dtype``)."""
    return _dtype_word(row.get("matmul_dtype"))


def frac_peak_valid(row) -> bool:
    """``frac_peak`` is an efficiency only when its denominator is the rate of the path's own
    input dtype (an fp8 row divided by the bf16 rate is not an fp8 efficiency)."""
    den = frac_peak_denominator(row)
    return den is not None and den == input_dtype(row)


def frac_peak_text(row) -> str:
    """``0.800 (bf16)``; ``– (÷ bf16 rate)`` when the denominator is not the input dtype's."""
    v = _f(row.get("frac_peak"))
    if v is None:
        return "–"
    if not frac_peak_valid(row):
        return f"– (÷ {frac_peak_denominator(row) or 'unnamed'} rate)"
    return f"{v:.3f} ({frac_peak_denominator(row)})"


def attn_frac_peak(row) -> float | None:
    """The attention's TFLOP/s over the bf16 matmul rate measured in the same sweep: the row's
    ``attn_frac_peak``, or for older rows ``attn_tflops / matmul_tflops`` when that rate is bf16."""
    v = _f(row.get("attn_frac_peak"))
    if v is not None:
        return v
    t, mm = _f(row.get("attn_tflops")), _f(row.get("matmul_tflops"))
    if t is None or mm is None or _dtype_word(row.get("matmul_dtype")) != "bf16":
        return None
    return t / mm


def path_sort_key(p: str) -> int:
    return PATH_ORDER.index(p) if p in PATH_ORDER else len(PATH_ORDER)


def cell_text(row) -> str:
    """``time / peak_extra`` of an ok row, else its status."""
    if row is None:
        return ""
    if row["status"] != "ok":
        return str(row["status"]).upper()
    return f"{fmt_time(row['time_s'])} / {_num(row['peak_extra_gib'], '.2f')} GiB"


def _md(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "|" + "---|" * len(header)
    return "\n".join(["| " + " | ".join(header) + " |", align] + ["| " + " | ".join(r) + " |" for r in rows])


def _status(r) -> str:
    return str(r["status"]) if r["status"] == "ok" else f"**{r['status']}**"


def bench_table(df: pd.DataFrame) -> str:
    """Every path at each (model, S): time (and the checked call's time where measured), TFLOP/s,
    frac_peak with its denominator, peak_extra, the speed-up of ``stream`` over the baselines
    (their time / stream's, same commit only), and the commit."""
    if df.empty:
        return "(no rows)"
    d = df.copy()
    checked = "time_checked_s" in d and pd.to_numeric(d["time_checked_s"], errors="coerce").notna().any()
    head = (["model", "S", "path", "status", "time"] + (["time, checked call"] if checked else [])
            + ["TFLOP/s", "frac_peak", "peak_extra GiB"] + [f"stream vs {b}" for b in RATIO_BASELINES] + ["commit"])
    d["_p"] = d["path"].map(path_sort_key)
    d["_c"] = [row_commit(r) for _, r in d.iterrows()]
    rows = []
    for (model, S), g in d.sort_values(["model", "S", "_p"]).groupby(["model", "S"], sort=False):
        ok = g[g["status"] == "ok"]
        st = ok[ok["path"] == "stream"]
        for _, r in g.iterrows():
            ratios = []
            for b in RATIO_BASELINES:
                base = ok[(ok["path"] == b) & (ok["_c"] == r["_c"])]
                ratios.append(f"{float(base.iloc[0]['time_s']) / float(st.iloc[0]['time_s']):.2f}×"
                              if r["path"] == "stream" and len(st) and len(base) else "")
            rows.append([str(model), f"{int(S):,}", str(r["path"]), _status(r), fmt_time(r["time_s"])]
                        + ([fmt_time(r.get("time_checked_s"))] if checked else [])
                        + [_num(r["tflops"], ".1f"), frac_peak_text(r), _num(r["peak_extra_gib"], ".2f")] + ratios
                        + [r["_c"]])
    return _md(head, rows)


def scaling_table(df: pd.DataFrame, model: str) -> str:
    """S down, paths across: ``time / peak_extra`` or the status (random inputs, one GPU)."""
    d = df[df["model"] == model]
    if "inputs" in d:
        d = d[d["inputs"].fillna("random") == "random"]
    if "n_gpus" in d:
        d = d[pd.to_numeric(d["n_gpus"], errors="coerce").fillna(1) == 1]
    if d.empty:
        return "(no rows)"
    paths = sorted(d["path"].unique(), key=path_sort_key)
    rows = []
    for S, g in d.groupby("S"):
        by = {r["path"]: r for _, r in g.iterrows()}
        rows.append([f"{int(S):,}"] + [cell_text(by.get(p)) for p in paths])
    commits = sorted({row_commit(r) for _, r in d.iterrows()})
    return _md(["S"] + paths, rows, "|---:|" + "---|" * len(paths)) + f"\n\nRows measured at: {', '.join(commits)}."


def robustness_table(df: pd.DataFrame) -> str:
    """Per (path, model, S): the random-input time, each other input kind's time as a multiple of
    it (same commit only), and the minimum recall per kind."""
    d = df[df["status"] == "ok"].copy()
    if d.empty:
        return "(no rows)"
    d["inputs"] = d["inputs"].fillna("random") if "inputs" in d else "random"
    d["_c"] = [row_commit(r) for _, r in d.iterrows()]
    kinds = [k for k in INPUT_KINDS if k in set(d["inputs"])] + sorted(set(d["inputs"]) - set(INPUT_KINDS))
    others = [k for k in kinds if k != "random"]
    head = (["path", "model", "S", "random: time"] + [f"{k} / random" for k in others]
            + [f"recall min: {k}" for k in kinds] + ["commit"])
    rows = []
    d["_p"] = d["path"].map(path_sort_key)
    for (_, path, model, S), g in d.sort_values(["_p", "model", "S"]).groupby(["_p", "path", "model", "S"], sort=False):
        by = {r["inputs"]: r for _, r in g.iterrows()}
        base = by.get("random")
        cells = [path, str(model), f"{int(S):,}", fmt_time(base["time_s"]) if base is not None else "–"]
        for k in others:
            r = by.get(k)
            same = r is not None and base is not None and r["_c"] == base["_c"]
            cells.append(f"{float(r['time_s']) / float(base['time_s']):.2f}×" if same else "–")
        cells += [_num(by[k]["recall_min"], ".4f") if k in by else "–" for k in kinds]
        cells.append(", ".join(sorted(set(g["_c"]))))
        rows.append(cells)
    return _md(head, rows)


def e2e_table(df: pd.DataFrame) -> str:
    """The CSA step per (model, S, attention kernel): step, indexer and attention times, the
    attention's TFLOP/s and fraction of the bf16 matmul rate, step over indexer, commit."""
    d = df[df["status"] == "ok"].copy()
    if d.empty:
        return "(no rows)"
    head = ["model", "S", "attention", "step", "indexer", "attention time", "attention TFLOP/s", "of bf16 rate",
            "step / indexer", "commit"]
    rows = []
    for _, r in d.sort_values(["model", "S", "attn_impl"]).iterrows():
        frac = attn_frac_peak(r)
        ratio = _f(r["time_s"]) / _f(r["time_indexer_s"]) if _f(r["time_s"]) and _f(r["time_indexer_s"]) else None
        rows.append([str(r["model"]), f"{int(r['S']):,}", str(r["attn_impl"]), fmt_time(r["time_s"]),
                     fmt_time(r["time_indexer_s"]), fmt_time(r["time_attn_s"]), _num(r["attn_tflops"], ".0f"),
                     "–" if frac is None else f"{frac:.2f}", "–" if ratio is None else f"{ratio:.2f}×", row_commit(r)])
    return _md(head, rows)


def scale_out_table(df: pd.DataFrame) -> str:
    """Per (path, S, GPU count): status, time, peak per rank, the speed-up over one GPU at the
    same S (same commit only), recall, commit."""
    d = df.copy()
    if d.empty or "n_gpus" not in d:
        return "(no rows)"
    d["n_gpus"] = pd.to_numeric(d["n_gpus"], errors="coerce").fillna(1).astype(int)
    d["_c"] = [row_commit(r) for _, r in d.iterrows()]
    head = ["path", "S", "GPUs", "status", "time", "peak per rank GiB", "speed-up over 1 GPU", "recall min", "commit"]
    rows = []
    d["_p"] = d["path"].map(path_sort_key)
    for _, r in d.sort_values(["_p", "S", "n_gpus"]).iterrows():
        one = d[(d["path"] == r["path"]) & (d["S"] == r["S"]) & (d["n_gpus"] == 1) & (d["status"] == "ok")
                & (d["_c"] == r["_c"])]
        x = ""
        if r["n_gpus"] > 1 and r["status"] == "ok" and len(one) and _f(r["time_s"]):
            x = f"{float(one.iloc[0]['time_s']) / float(r['time_s']):.2f}×"
        rows.append([str(r["path"]), f"{int(r['S']):,}", str(r["n_gpus"]), _status(r), fmt_time(r["time_s"]),
                     _num(r["peak_extra_gib"], ".2f"), x, _num(r.get("recall_min"), ".4f"), r["_c"]])
    return _md(head, rows)
