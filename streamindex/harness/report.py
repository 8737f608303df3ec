"""``results/<hardware>/REPORT.md`` and ``results/<hardware>/figures/*.png`` from the tables only.

The report lists every claim with its verdict (:mod:`.claims`: each from the rows of one commit,
references and goals from ``conf/anchors.yaml``), the references with their sources, the bench,
robustness, CSA-step, scale-out and scaling tables, a recall summary, the figures, and where the
rows come from (GPU, versions, commits). Nothing is measured and nothing is filled in: a claim
without rows is NOT MEASURED.

Multi-GPU rows of the same GPU kind (``results/<hardware>x<N>/``, e.g. ``h200x2``) join this
report's scale-out table, claims and figure.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .claims import FAIL, INFO, NOT_MEASURED, PASS, Anchors, all_claims, load_anchors
from .figures import FIGURES, draw_all
from .results import current_rows, read_table
from .tables import bench_table, e2e_table, fmt_time, robustness_table, row_commit, scale_out_table, scaling_table

CAPTIONS = {
    "scaling_time.png": "Time per call vs S, a panel per model (log-log); × at the top = out of memory; dashed = "
                        "the published StreamIndex times.",
    "scaling_peak.png": "Peak HBM beyond the inputs vs S (log-log); × at the top = out of memory; dashed = published.",
    "speedup_vs_partition_merge.png": "Speed-up over our implementation of the paper's algorithm "
                                      "(`partition_merge`) vs S.",
    "throughput.png": "Useful TFLOP/s (2·H·D per visible pair) of `stream` and `stream_fp8` vs S, a line per model, "
                      "with the matmul rates measured in the sweeps: a cliff shows as a dip.",
    "recall_vs_S.png": "Tie-aware recall vs the fp64 oracle (sampled rows) vs S.",
    "recall_heatmap_chunks.png": "Minimum recall over chunk sizes (design space).",
    "time_peak_vs_k.png": "Time and peak vs topk (design space).",
    "robustness.png": "Time of each input kind over random inputs (same path, model, S), and the recall of every "
                      "robustness cell.",
    "e2e_csa.png": "The CSA step: (a) the indexer's time, (b) the sparse attention's time, TileLang (solid) against "
                   "the Triton fallback (dashed), (c) the attention's TFLOP/s (4·heads·512 FLOPs per KV row: "
                   "S·heads·(topk + window)·1024·2 at long S) with the goal and the peers' rates.",
    "scale_out.png": "Time vs S on one and more GPUs, and the speed-up over one GPU.",
}
SECTION_RULES = (
    "Each claim uses rows measured at **one** commit: the newest commit (by the date of its rows) that has every "
    "row the claim needs; `rows` names the tables and that commit (`+dirty` = measured with uncommitted changes). "
    "When the rows exist only at different commits, the value they would give is shown and the claim is "
    "NOT MEASURED. Only rows measured on a GPU count. Published figures in \"GB\" are compared as GiB "
    "(docs/DESIGN.md §4 says why). Peak = `peak_extra_gib`: peak allocated during the call minus what was "
    "allocated just before it (outputs included). `frac_peak` is judged only against the matmul rate of the "
    "path's own input dtype (`matmul_dtype`).")


def multi_gpu_siblings(results_dir, hardware: str) -> list[Path]:
    """``<results_dir>/<hardware>x<N>/`` folders (several GPUs of the same kind)."""
    root = Path(results_dir)
    pat = re.compile(re.escape(hardware) + r"x\d+")
    return sorted(p for p in root.iterdir() if p.is_dir() and pat.fullmatch(p.name)) if root.is_dir() else []


def load_report_tables(results_dir, hardware: str) -> tuple[dict, dict]:
    """``(every recorded row, current rows)``, each ``{experiment: frame}``, of
    ``<results_dir>/<hardware>/`` plus the ``scale_out`` tables of its multi-GPU siblings."""
    root = Path(results_dir) / hardware
    files = sorted(root.glob("*.csv")) if root.is_dir() else []
    allrows = {p.stem: read_table(p) for p in files}
    for sib in multi_gpu_siblings(results_dir, hardware):
        extra = sib / "scale_out.csv"
        if extra.is_file():
            frames = [f for f in (allrows.get("scale_out"), read_table(extra)) if f is not None and len(f)]
            if frames:
                allrows["scale_out"] = pd.concat(frames, ignore_index=True)
    allrows = {k: v for k, v in allrows.items() if len(v)}
    return allrows, {k: current_rows(v) for k, v in allrows.items()}


def _uniq(df: pd.DataFrame, col: str) -> str:
    vals = sorted({str(v) for v in df[col].dropna().unique()}) if col in df else []
    return ", ".join(vals) if vals else "–"


def provenance_section(tables: dict) -> str:
    allrows = pd.concat([t for t in tables.values() if len(t)], ignore_index=True)
    lines = ["## Provenance", ""]
    for label, col in (("GPU", "gpu_name"), ("driver", "gpu_driver"), ("CUDA", "cuda_version"),
                       ("torch", "torch_version"), ("triton", "triton_version"), ("tilelang", "tilelang_version"),
                       ("python", "python_version"), ("host", "hostname"), ("launcher", "launcher")):
        if col in allrows:
            lines.append(f"- {label}: {_uniq(allrows, col)}")
    dates = allrows["date"].dropna().astype(str) if "date" in allrows else pd.Series(dtype=str)
    if len(dates):
        lines.append(f"- measured: {dates.min()} … {dates.max()}")
    if "matmul_tflops" in allrows:
        mm = allrows.assign(_mm=pd.to_numeric(allrows["matmul_tflops"], errors="coerce")).dropna(subset=["_mm"])
        for dtype, g in mm.groupby(mm["matmul_dtype"].astype(str)):
            lines.append(f"- dense matmul rate measured at sweep start, {dtype}: {g['_mm'].min():.0f}–"
                         f"{g['_mm'].max():.0f} TFLOP/s (the denominator of frac_peak for rows of that dtype)")
    lines += ["", "Commits, newest first (by the latest row measured at each):", "",
              "| commit | latest row | rows (current) | tables |", "|---|---|---:|---|"]
    rows = []
    for name, t in tables.items():
        d = t.assign(_c=[row_commit(r) for _, r in t.iterrows()], _t=name,
                     _d=t["date"].astype(str) if "date" in t else "")
        rows.append(d[["_c", "_t", "_d"]])
    c = pd.concat(rows, ignore_index=True)
    for commit, g in sorted(c.groupby("_c"), key=lambda kv: kv[1]["_d"].max(), reverse=True):
        lines.append(f"| {commit} | {g['_d'].max()} | {len(g)} | {', '.join(sorted(set(g['_t'])))} |")
    lines += ["", "| table | rows (current) | ok | oom | skipped | error |", "|---|---:|---:|---:|---:|---:|"]
    for name, t in tables.items():
        n = t["status"].value_counts()
        lines.append(f"| {name}.csv | {len(t)} | {n.get('ok', 0)} | {n.get('oom', 0)} | {n.get('skipped', 0)} | "
                     f"{n.get('error', 0)} |")
    return "\n".join(lines)


def claims_section(allrows: dict, anchors: Anchors, detail: bool = True) -> tuple[str, dict]:
    """The verdict counts per group and, with ``detail``, every claim of each group."""
    claims = all_claims(allrows, anchors)
    counts = {v: sum(c.verdict == v for c in claims) for v in (PASS, FAIL, NOT_MEASURED, INFO)}
    groups = list(dict.fromkeys(c.group for c in claims))
    lines = ["## Claims, checked against these rows", "",
             f"**{counts[PASS]} PASS · {counts[FAIL]} FAIL · {counts[NOT_MEASURED]} NOT MEASURED · "
             f"{counts[INFO]} INFO**", "", SECTION_RULES, "",
             "| group | PASS | FAIL | NOT MEASURED | INFO |", "|---|---:|---:|---:|---:|"]
    for g in groups:
        cs = [c for c in claims if c.group == g]
        lines.append(f"| {g} | " + " | ".join(str(sum(c.verdict == v for c in cs))
                                              for v in (PASS, FAIL, NOT_MEASURED, INFO)) + " |")
    for g in groups if detail else []:
        lines += ["", f"### {g[0].upper() + g[1:]}", "",
                  "| claim | reference | measured here | verdict | rows |", "|---|---|---|---|---|"]
        for c in (c for c in claims if c.group == g):
            verdict = f"**{c.verdict}**" if c.verdict in (PASS, FAIL) else c.verdict
            lines.append(f"| {c.claim} | {c.published} | {c.measured} | {verdict} | {c.source} |")
    return "\n".join(lines), counts


def _figure_of(entry: dict) -> str:
    parts = []
    if "points" in entry:
        parts.append("; ".join(f"{int(p['S']):,}: {fmt_time(p['time_s'])}"
                               + (f" / {p.get('peak_gb', p.get('peak_gib'))} {'GB' if 'peak_gb' in p else 'GiB'}"
                                  if ("peak_gb" in p or "peak_gib" in p) else "") for p in entry["points"]))
    if "time_s" in entry:
        parts.append(f"{int(entry['S']):,}: {fmt_time(entry['time_s'])}" if "S" in entry else fmt_time(entry["time_s"]))
    for k, unit in (("peak_gb", "GB"), ("peak_gib", "GiB")):
        if k in entry:
            parts.append(f"{entry[k]} {unit}")
    if "tflops_min" in entry:
        parts.append(f"{entry['tflops_min']}–{entry['tflops_max']} TFLOP/s")
    if "tflops" in entry:
        parts.append(f"{entry['tflops']} TFLOP/s")
    if "mean" in entry:
        parts.append(f"mean {entry['mean']}, min {entry['min']}")
    if "factor" in entry:
        parts.append(f"{entry['factor']}×")
    if "bytes_per_s" in entry:
        parts.append(f"{float(entry['bytes_per_s']) / 1e12:g} TB/s")
    return " · ".join(parts) or "–"


def references_section(anchors: Anchors) -> str:
    lines = ["## References", "", "From `conf/anchors.yaml` (the only place these figures are written).", "",
             "| reference | figure | source |", "|---|---|---|"]
    for key, e in anchors.references():
        src = " ".join(str(e["source"]).split())
        lines.append(f"| {e.get('label', key)} (`{key}`) | {_figure_of(e)} | {src} |")
    return "\n".join(lines)


def _remove_stale_figures(fig_dir: Path, written: list[Path]) -> None:
    """Figures of this report's names that were not drawn this time (their rows are gone)."""
    keep = {p.name for p in written}
    for name in FIGURES:
        p = fig_dir / name
        if name not in keep and p.is_file():
            p.unlink()


def build_report(results_dir, hardware: str, anchors: Anchors | None = None) -> Path | None:
    """Write ``<results_dir>/<hardware>/REPORT.md`` and its figures; ``None`` if there are no tables."""
    root = Path(results_dir) / hardware
    allrows, tables = load_report_tables(results_dir, hardware)
    if not tables:
        return None
    anchors = anchors if anchors is not None else load_anchors()
    figs = draw_all(tables, root / "figures", anchors)
    _remove_stale_figures(root / "figures", figs)
    gpu = any((t["device"] == "cuda").any() for t in tables.values() if "device" in t)
    claims_md, _ = claims_section(allrows, anchors, detail=gpu)
    sibs = [p.name for p in multi_gpu_siblings(results_dir, hardware) if (p / "scale_out.csv").is_file()]
    parts = [f"# StreamIndex results — {hardware}", "",
             "Generated by `python -m experiments.report` from the tables in this folder"
             + (f" (and the scale-out rows of {', '.join(f'`{s}/`' for s in sibs)})" if sibs else "")
             + " only; every row carries the command that reproduces it. The references and goals come from "
             "`conf/anchors.yaml`; the metrics are defined in `docs/DESIGN.md` §3.", ""]
    if not gpu:
        parts += [f"> Rows of the `{hardware}` profile were measured without a GPU (the Triton interpreter): they "
                  "show that the harness runs end to end and say nothing about speed. The claims are about GPU rows "
                  "and are NOT MEASURED here (listed by group only).", ""]
    parts += [claims_md, "", references_section(anchors), ""]
    for name, title, fn in (("bench", "Speed table (`make bench`)", bench_table),
                            ("robustness", "No cliffs: input kinds and models (`robustness`)", robustness_table),
                            ("e2e", "The CSA step (`e2e`)", e2e_table),
                            ("scale_out", "Scale-out (`scale_out`)", scale_out_table)):
        if name in tables:
            parts += [f"## {title}", "", fn(tables[name]), ""]
    if "scaling" in tables:
        parts += ["## Scaling (time / peak_extra per call)", ""]
        sc = tables["scaling"]
        for model in sorted(sc["model"].dropna().unique()):
            parts += [f"### {model}", "", scaling_table(sc, model), ""]
    rec = recall_section(tables)
    if rec:
        parts += [rec, ""]
    if figs:
        parts += ["## Figures", ""]
        for f in figs:
            parts += [f"![{f.stem}](figures/{f.name})", "", CAPTIONS.get(f.name, ""), ""]
    parts += [provenance_section(tables), ""]
    out = root / "REPORT.md"
    out.write_text("\n".join(parts))
    return out


def recall_section(tables: dict) -> str:
    frames = [tables[e] for e in ("recall", "design_space", "robustness") if e in tables]
    if not frames:
        return ""
    d = pd.concat(frames, ignore_index=True)
    for c in ("recall_min", "recall_mean", "overlap_vs_materialize"):
        d[c] = pd.to_numeric(d[c], errors="coerce")
    d = d[(d["status"] == "ok") & d["recall_min"].notna()]
    if d.empty:
        return ""
    g = d.groupby("path").agg(cells=("recall_min", "size"), recall_mean=("recall_mean", "mean"),
                              recall_min=("recall_min", "min"), overlap_min=("overlap_vs_materialize", "min"))
    lines = ["## Recall (tie-aware, vs the fp64 oracle on sampled rows; every current row, all commits)", "",
             "| path | cells | mean | min | min overlap vs materialize |", "|---|---:|---:|---:|---:|"]
    for p, r in g.iterrows():
        ov = "–" if pd.isna(r["overlap_min"]) else f"{r['overlap_min']:.4f}"
        lines.append(f"| {p} | {int(r['cells'])} | {r['recall_mean']:.5f} | {r['recall_min']:.4f} | {ov} |")
    return "\n".join(lines)
