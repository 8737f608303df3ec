"""Figures and the claims report from the small synthetic fixture tables (tests/fixtures/)."""
from __future__ import annotations

import shutil

import pytest

from streamindex.harness.claims import FAIL, NOT_MEASURED, PASS, all_claims
from streamindex.harness.report import build_report
from streamindex.harness.results import load_results

from .harness_helpers import FIXTURE_RESULTS, run_module


@pytest.fixture()
def fixture_results(tmp_path):
    shutil.copytree(FIXTURE_RESULTS, tmp_path / "results")
    return tmp_path / "results"


def _claims(root):
    return {c.claim: c for c in all_claims(load_results(root, "h200"))}


def test_claims_are_computed_from_rows(fixture_results):
    c = _claims(fixture_results)
    assert c["per-head `materialize` fits S=32,768 and runs out of memory from S=65,536"].verdict == PASS
    ext = c["regime extension of `stream` over per-head `materialize` (longest S completed, ratio)"]
    assert ext.verdict == PASS and ext.measured.startswith("128×")
    assert c["`stream_fp8` completes S=8,388,608 with fp8 q on one H200"].verdict == FAIL   # an oom row
    assert c["`stream_fp8` at S=1,048,576 in ≤ 3.0 s"].verdict == NOT_MEASURED            # no row
    pm = c["`partition_merge` reproduces the published algorithm at S=262,144 (within 10 %)"]
    assert pm.verdict == FAIL and "0.37 GiB" in pm.measured
    assert c["`stream` ≥ 6× faster than `partition_merge` at S=262,144, side by side in one run (bench)"].verdict == PASS
    rec = [v for k, v in c.items() if k.startswith("`partition_merge` tie-aware recall")][0]
    assert rec.verdict == PASS and "min 0.9980" in rec.measured


def test_cpu_rows_never_decide_a_claim(fixture_results):
    tables = load_results(fixture_results, "h200")
    for t in tables.values():
        t["device"] = "cpu"
    assert {c.verdict for c in all_claims(tables)} <= {NOT_MEASURED}


def test_report_and_figures(fixture_results):
    out = build_report(fixture_results, "h200")
    text = out.read_text()
    figs = {p.name for p in (fixture_results / "h200" / "figures").glob("*.png")}
    assert {"scaling_time.png", "scaling_peak.png", "speedup_vs_partition_merge.png", "recall_heatmap_chunks.png",
            "time_peak_vs_k.png", "e2e_csa.png", "recall_vs_S.png"} <= figs
    for name in figs:
        assert f"(figures/{name})" in text
    for needle in ("**PASS**", "**FAIL**", "NOT MEASURED", "## Speed table", "## Scaling", "### v4_pro",
                   "## Provenance", "FIXTURE (synthetic, not measured)", "| 65,536 |"):
        assert needle in text, needle


def test_report_cli_regenerates_from_tables_only(fixture_results):
    res = run_module("experiments.report", f"results_dir={fixture_results}", timeout=120)
    assert res.returncode == 0, res.stderr
    assert (fixture_results / "h200" / "REPORT.md").exists()
    bad = run_module("experiments.report", "result_dir=x", timeout=60)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
