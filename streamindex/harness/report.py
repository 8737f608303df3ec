"""``results/<hardware>/REPORT.md`` and ``results/<hardware>/figures/*.png`` from the tables only.

The report states where the rows come from (GPU, driver, versions, commits, dates, the matmul
rate behind ``frac_peak``), lists every published claim with its verdict (:mod:`claims`), and
shows the bench table, the scaling tables, a recall summary and the figures. Nothing is
measured here and nothing is filled in: a claim without rows is NOT MEASURED.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .claims import FAIL, INFO, NOT_MEASURED, PASS, all_claims
from .figures import draw_all
from .results import load_results
from .tables import bench_table, scaling_table

_FIGURE_CAPTIONS = {
    "scaling_time.png": "Time per call vs S (log-log); × at the top = out of memory.",
    "scaling_peak.png": "Peak HBM beyond the inputs vs S (log-log); × at the top = out of memory.",
    "speedup_vs_partition_merge.png": "Speed-up over the paper's algorithm (`partition_merge`) vs S.",
    "recall_vs_S.png": "Tie-aware recall vs the fp64 oracle (sampled rows) vs S.",
    "recall_heatmap_chunks.png": "Minimum recall over chunk sizes (design space, S = 16,384 on the H200).",
    "time_peak_vs_k.png": "Time and peak vs topk (design space).",
    "e2e_csa.png": "The whole CSA step vs S, TileLang and Triton attention.",
}


def _uniq(df: pd.DataFrame, col: str) -> str:
    vals = sorted({str(v) for v in df[col].dropna().unique()}) if col in df else []
    return ", ".join(vals) if vals else "–"


def provenance_section(tables: dict) -> str:
    allrows = pd.concat([t for t in tables.values() if len(t)], ignore_index=True)
    lines = ["## Provenance", ""]
    for label, col in (("GPU", "gpu_name"), ("driver", "gpu_driver"), ("CUDA", "cuda_version"),
                       ("torch", "torch_version"), ("triton", "triton_version"), ("tilelang", "tilelang_version"),
                       ("python", "python_version"), ("git commit", "git_commit"), ("host", "hostname")):
        lines.append(f"- {label}: {_uniq(allrows, col)}")
    dates = allrows["date"].dropna().astype(str)
    if len(dates):
        lines.append(f"- measured: {dates.min()} … {dates.max()}")
    mm = pd.to_numeric(allrows["matmul_tflops"], errors="coerce").dropna()
    if len(mm):
        lines.append(f"- dense matmul rate measured at sweep start ({_uniq(allrows, 'matmul_dtype')}): "
                     f"{mm.min():.0f}–{mm.max():.0f} TFLOP/s (the denominator of frac_peak)")
    dirty = allrows["git_dirty"].astype(str).str.lower().eq("true").sum()
    if dirty:
        lines.append(f"- {dirty} rows were measured with uncommitted changes in the tree")
    lines += ["", "| table | rows (current) | ok | oom | skipped | error |", "|---|---:|---:|---:|---:|---:|"]
    for name, t in tables.items():
        c = t["status"].value_counts()
        lines.append(f"| {name}.csv | {len(t)} | {c.get('ok', 0)} | {c.get('oom', 0)} | {c.get('skipped', 0)} | {c.get('error', 0)} |")
    return "\n".join(lines)


def claims_section(tables: dict) -> tuple[str, dict]:
    claims = all_claims(tables)
    counts = {v: sum(c.verdict == v for c in claims) for v in (PASS, FAIL, NOT_MEASURED, INFO)}
    lines = ["## Published claims, checked against these rows", "",
             f"{counts[PASS]} PASS · {counts[FAIL]} FAIL · {counts[NOT_MEASURED]} NOT MEASURED"
             + (f" · {counts[INFO]} INFO" if counts[INFO] else ""), "",
             "| group | claim | published | measured here | verdict | rows |", "|---|---|---|---|---|---|"]
    for c in claims:
        verdict = f"**{c.verdict}**" if c.verdict in (PASS, FAIL) else c.verdict
        lines.append(f"| {c.group} | {c.claim} | {c.published} | {c.measured} | {verdict} | {c.source} |")
    lines += ["", "Published figures in \"GB\" are compared as GiB, as DESIGN.md §4 does (6.21 GB published ↔ "
              "6.18 GiB re-run on our H200). Peak = `peak_extra_gib`: peak allocated during the call minus "
              "what was allocated just before it (outputs included)."]
    return "\n".join(lines), counts


def recall_section(tables: dict) -> str:
    frames = [tables[e] for e in ("recall", "design_space") if e in tables]
    if not frames:
        return ""
    d = pd.concat(frames, ignore_index=True)
    d = d[(d["status"] == "ok") & pd.to_numeric(d["recall_min"], errors="coerce").notna()]
    if d.empty:
        return ""
    g = d.groupby("path").agg(cells=("recall_min", "size"), recall_mean=("recall_mean", "mean"),
                              recall_min=("recall_min", "min"), overlap_min=("overlap_vs_materialize", "min"))
    lines = ["## Recall (tie-aware, vs the fp64 oracle on sampled rows)", "",
             "| path | cells | mean | min | min overlap vs materialize |", "|---|---:|---:|---:|---:|"]
    for p, r in g.iterrows():
        ov = "–" if pd.isna(r["overlap_min"]) else f"{r['overlap_min']:.4f}"
        lines.append(f"| {p} | {r['cells']} | {r['recall_mean']:.5f} | {r['recall_min']:.4f} | {ov} |")
    return "\n".join(lines)


def build_report(results_dir, hardware: str) -> Path | None:
    """Write ``<results_dir>/<hardware>/REPORT.md`` and its figures; ``None`` if there are no tables."""
    root = Path(results_dir) / hardware
    tables = load_results(results_dir, hardware)
    tables = {k: v for k, v in tables.items() if len(v)}
    if not tables:
        return None
    figs = draw_all(tables, root / "figures")
    claims_md, counts = claims_section(tables)
    parts = [f"# StreamIndex results — {hardware}", "",
             "Generated by `python -m experiments.report` from the tables in this folder only "
             "(every row carries the command that reproduces it).", ""]
    if hardware != "h200":
        parts += [f"> Rows of the `{hardware}` profile: they check that the harness runs end to end and say "
                  "nothing about GPU speed; the claims below are about the H200 and are NOT MEASURED here.", ""]
    parts += [claims_md, ""]
    if "bench" in tables:
        parts += ["## Speed table (`make bench`)", "", bench_table(tables["bench"]), ""]
    if "scaling" in tables:
        parts += ["## Scaling (time / peak_extra per call)", ""]
        for model in sorted(tables["scaling"]["model"].unique()):
            parts += [f"### {model}", "", scaling_table(tables["scaling"], model), ""]
    rec = recall_section(tables)
    if rec:
        parts += [rec, ""]
    if figs:
        parts += ["## Figures", ""]
        for f in figs:
            parts += [f"![{f.stem}](figures/{f.name})", "", _FIGURE_CAPTIONS.get(f.name, ""), ""]
    parts += [provenance_section(tables), ""]
    out = root / "REPORT.md"
    out.write_text("\n".join(parts))
    return out
