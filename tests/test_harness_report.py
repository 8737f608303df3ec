"""The claims and the report from the synthetic fixture tables (tests/fixtures/): references and
goals from the anchors file, every claim from the rows of one commit, fp8 efficiency only against
the fp8 rate, CPU rows deciding nothing."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from streamindex.harness import report
from streamindex.harness.claims import (
    FAIL,
    INFO,
    NOT_MEASURED,
    PASS,
    Anchors,
    Rows,
    all_claims,
    at_one_commit,
    load_anchors,
)
from streamindex.harness.report import build_report, load_report_tables
from streamindex.harness.tables import bench_table

from .harness_helpers import FIXTURE_RESULTS, REPO, run_module

NEW, OLD = "f1e2d3c", "0a1b2c3"


@pytest.fixture()
def fixture_results(tmp_path):
    shutil.copytree(FIXTURE_RESULTS, tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture(scope="module")
def claims():
    allrows, _ = load_report_tables(FIXTURE_RESULTS, "h200")
    return {c.claim: c for c in all_claims(allrows)}


def _one(claims, *words):
    hits = [c for k, c in claims.items() if all(w in k for w in words)]
    assert len(hits) == 1, (words, [h.claim for h in hits])
    return hits[0]


def test_newest_commit_wins(claims):
    # the same cell measured at an older commit (where it would PASS) and at the newest (FAIL)
    c = _one(claims, "`materialize` at S=32,768 reproduces")
    assert c.verdict == FAIL and c.source == f"scaling.csv @ {NEW}" and c.measured.startswith("200.0 ms")


def test_rows_of_several_commits_are_never_mixed(claims):
    c = _one(claims, "`stream` faster than our `partition_merge` at S=1,048,576")
    assert c.verdict == NOT_MEASURED and "several commits" in c.measured
    assert f"@ {NEW}" in c.source and f"@ {OLD}" in c.source
    # the same partition_merge row alone decides its own claim, at its own commit
    c = _one(claims, "re-run of the published algorithm at S=1,048,576")
    assert c.verdict == PASS and c.source == f"bench.csv @ {OLD}"


def test_fp8_efficiency_only_against_the_fp8_rate(claims):
    c = _one(claims, "`stream_fp8` frac_peak at S=1,048,576")
    assert c.verdict == PASS and "fp8 rate" in c.measured and c.measured.startswith("0.5")
    text = bench_table(load_report_tables(FIXTURE_RESULTS, "h200")[1]["bench"])
    # the older V4-Pro fp8 row divided by the bf16 rate is not shown as a fraction
    assert re.search(r"\| v4_pro \| 1,048,576 \| stream_fp8 \| ok \|[^\n]*\| – \(÷ bf16 rate\) \|", text)
    assert re.search(r"\| v4_flash \| 1,048,576 \| stream_fp8 \| ok \|[^\n]*\| 0\.\d+ \(fp8\) \|", text)


def test_goal_groups(claims):
    expect = {
        ("V4-Pro over V4-Flash at S=65,536",): PASS,
        ("V4-Pro over V4-Flash at S=131,072",): FAIL,
        ("V3.2 at S=131,072 over V4-Flash at S=262,144",): PASS,
        ("(ties8) over random keys",): PASS,
        ("recall on every robustness cell",): PASS,
        ("V3.2 scaling rows",): PASS,
        ("attention TFLOP/s", "(V4-Flash)"): PASS,
        ("attention TFLOP/s", "(V4-Pro)"): FAIL,
        ("TileLang attention faster", "(V4-Pro)"): FAIL,
        ("whole CSA step", "(V4-Flash)"): PASS,
        ("`stream_fp8` completes S=16,777,216 on 2 GPUs",): PASS,
        ("`stream` speed-up of 2 GPUs",): PASS,
        ("`csa` speed-up of 2 GPUs",): FAIL,
        ("checked over unchecked call time at S=262,144",): INFO,
        ("`stream_fp8` completes S=8,388,608 with fp8 q on one GPU",): FAIL,   # an oom row
    }
    for words, verdict in expect.items():
        assert _one(claims, *words).verdict == verdict, words
    assert "behind at 65,536" in _one(claims, "TileLang attention faster", "(V4-Pro)").measured
    finite = _one(claims, "checked over unchecked call time at S=262,144")
    assert finite.measured == "`stream` 1.020×, `stream_fp8` 1.020×"


def test_goals_are_named_for_what_they_are(claims):
    for c in claims.values():
        assert not re.search(r"issue \d", c.group + c.claim + c.published), c


def test_references_and_thresholds_come_from_the_anchors_file(tmp_path):
    data = yaml.safe_load((REPO / "conf" / "anchors.yaml").read_text())
    data["goals"]["no_cliff"]["pro_vs_flash_max_ratio"] = 1.5
    data["published"]["streamindex"]["points"][0]["time_s"] = 0.001
    a = Anchors(data, "edited.yaml")
    allrows, _ = load_report_tables(FIXTURE_RESULTS, "h200")
    c = {x.claim: x for x in all_claims(allrows, a)}
    assert _one(c, "V4-Pro over V4-Flash at S=131,072").verdict == PASS   # 1.40× ≤ 1.5×
    s32 = _one(c, "`stream` at S=32,768 no slower")
    assert s32.verdict == FAIL and s32.published.startswith("1.0 ms")
    del data["goals"]["csa"]
    with pytest.raises(KeyError, match="edited.yaml: missing entry 'goals.csa'"):
        all_claims(allrows, Anchors(data, "edited.yaml"))


def test_no_reference_figure_is_written_in_code():
    a = load_anchors()
    figures = set()
    for _, entry in a.references():
        for p in entry.get("points", [entry]):
            figures |= {v for k, v in p.items() if k in ("time_s", "peak_gb", "peak_gib") and v is not None}
        figures |= {entry[k] for k in ("tflops", "tflops_min", "tflops_max") if k in entry}
    code = "\n".join(p.read_text() for d in ("claims", "figures") for p in
                     (REPO / "streamindex" / "harness" / d).glob("*.py"))
    code += (REPO / "streamindex" / "harness" / "report.py").read_text()
    found = [v for v in figures if re.search(rf"(?<![\d.]){re.escape(str(v))}(?![\d.])", code)]
    assert not found, f"anchor figures written in code: {found}"


def test_one_commit_rule_directly():
    def rows(commit, date, dirty=False, S=1):
        return dict(device="cuda", experiment="bench", path="stream", model="v4_flash", S=S, status="ok", time_s=1.0,
                    git_commit=commit, git_dirty=dirty, date=date, cell_id=f"{commit}{S}{dirty}")

    t = {"bench": pd.DataFrame([rows("a" * 40, "2026-01-01T00:00:00+00:00", S=1),
                                rows("b" * 40, "2026-01-02T00:00:00+00:00", S=1),
                                rows("b" * 40, "2026-01-02T00:00:00+00:00", True, S=2),
                                rows("a" * 40, "2026-01-01T00:00:00+00:00", S=3)])}
    r = Rows(t)
    assert set(r.commits[:2]) == {"bbbbbbb+dirty", "bbbbbbb"} and r.commits[2] == "aaaaaaa"   # newest first
    s1 = ("S=1", lambda c: r.one(("bench",), commit=c, S=1))
    s3 = ("S=3", lambda c: r.one(("bench",), commit=c, S=3))
    s2 = ("S=2", lambda c: r.one(("bench",), commit=c, S=2))
    assert at_one_commit(r, dict([s1])).commit == "bbbbbbb"
    assert at_one_commit(r, dict([s1, s3])).commit == "aaaaaaa"
    p = at_one_commit(r, dict([s2, s3]))       # a dirty tree is not its commit: never mixed with it
    assert p.commit is None and p.mixed == {"S=2": "bbbbbbb+dirty", "S=3": "aaaaaaa"}
    p = at_one_commit(r, dict([s1, ("S=9", lambda c: r.one(("bench",), commit=c, S=9))]))
    assert p.commit is None and p.missing == ["S=9"]


def test_cpu_rows_never_decide_a_claim():
    allrows, _ = load_report_tables(FIXTURE_RESULTS, "h200")
    cpu = {k: v.assign(device="cpu") for k, v in allrows.items()}
    assert {c.verdict for c in all_claims(cpu)} == {NOT_MEASURED}


def test_report_and_figures(fixture_results):
    stale = fixture_results / "h200" / "figures" / "throughput.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    out = build_report(fixture_results, "h200")
    text = out.read_text()
    figs = {p.name for p in (fixture_results / "h200" / "figures").glob("*.png")}
    assert figs == {"scaling_time.png", "scaling_peak.png", "speedup_vs_partition_merge.png", "throughput.png",
                    "recall_vs_S.png", "recall_heatmap_chunks.png", "time_peak_vs_k.png", "robustness.png",
                    "e2e_csa.png", "scale_out.png"}
    assert stale.stat().st_size > 1000
    for name in figs:
        assert f"(figures/{name})" in text
    for needle in ("**PASS**", "**FAIL**", "NOT MEASURED", "## Speed table", "## No cliffs", "## The CSA step",
                   "## Scale-out", "## Scaling", "### v4_pro", "## References", "## Provenance",
                   "FIXTURE (synthetic, not measured)", f"| {NEW} |", f"| {OLD} |", "`h200x2/`",
                   "conf/anchors.yaml", "docs/DESIGN.md"):
        assert needle in text, needle
    for _, entry in load_anchors().references():
        assert entry["label"] in text
    assert "issue 4" not in text and "issue 5" not in text and "shared" not in text


def test_report_on_cpu_rows_says_so(fixture_results, monkeypatch):
    monkeypatch.setattr(report, "draw_all", lambda *a, **k: [])   # the figures are tested elsewhere
    for p in fixture_results.glob("*/*.csv"):
        pd.read_csv(p).assign(device="cpu").to_csv(p, index=False)
    text = build_report(fixture_results, "h200").read_text()
    assert "without a GPU" in text and "**PASS**" not in text and "**FAIL**" not in text
    assert "| published StreamIndex table | 0 | 0 | 9 | 0 |" in text and "### Published" not in text


def test_report_cli_regenerates_from_tables_only(fixture_results):
    res = run_module("experiments.report", f"results_dir={fixture_results}", "hardware=h200", timeout=180)
    assert res.returncode == 0, res.stderr
    assert (fixture_results / "h200" / "REPORT.md").exists()
    bad = run_module("experiments.report", "result_dir=x", timeout=60)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
    missing = run_module("experiments.report", f"results_dir={fixture_results}", "anchors=/nonexistent.yaml",
                         timeout=60)
    assert missing.returncode == 2 and "/nonexistent.yaml" in missing.stderr


def test_anchors_file_is_found_and_complete():
    a = load_anchors()
    assert Path(a.path).name == "anchors.yaml"
    for key, entry in a.references():
        assert entry.get("label") and entry.get("source"), key


def test_claims_survive_bad_rows():
    allrows, _ = load_report_tables(FIXTURE_RESULTS, "h200")
    clean = all_claims(allrows)
    bad = {k: v.astype(object) for k, v in allrows.items()}
    bad["bench"].loc[0, ["S", "time_s", "git_commit", "date"]] = ["32K", "fast", None, "yesterday"]
    bad["e2e"]["attn_tflops"] = "n/a"
    bad["scaling"].loc[1, "status"] = None
    got = all_claims(bad)
    assert [c.claim for c in got] == [c.claim for c in clean]
    assert _one({c.claim: c for c in got}, "attention TFLOP/s", "(V4-Flash)").verdict == NOT_MEASURED
