"""Every figure renders from the fixture tables with its legend outside the data and no label over
another panel; CPU rows carry the interpreter mark; bad rows and failing figures never stop the
report."""
from __future__ import annotations

import itertools
import warnings

import pandas as pd
import pytest

from streamindex.harness import figures
from streamindex.harness.claims import load_anchors
from streamindex.harness.figures import FIGURES, FigureWarning, draw, draw_all
from streamindex.harness.figures.style import INTERPRETER_MARK
from streamindex.harness.report import load_report_tables

from .harness_helpers import FIXTURE_RESULTS


@pytest.fixture(scope="module")
def tables():
    return load_report_tables(FIXTURE_RESULTS, "h200")[1]


@pytest.fixture(scope="module")
def anchors():
    return load_anchors()


def _boxes(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return r, [(ax, ax.get_tightbbox(r)) for ax in fig.axes]


def _overlap(a, b, px=1.0) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0)) > px and (min(a.y1, b.y1) - max(a.y0, b.y0)) > px


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_renders_with_legend_outside_and_no_overlap(name, tables, anchors, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureWarning)
        fig = draw(name, tables, anchors)
    assert fig is not None, f"{name}: the fixture has rows for every figure"
    r, boxes = _boxes(fig)
    for ax, _ in boxes:
        assert ax.get_legend() is None, f"{name}: a legend inside a panel"
    for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
        assert not _overlap(ba, bb), f"{name}: panels {a.get_title()!r} and {b.get_title()!r} overlap"
    if name != "recall_heatmap_chunks.png":     # a colour bar, no legend
        assert fig.legends, f"{name}: no legend"
        lb = fig.legends[0].get_window_extent(r)
        for ax, box in boxes:
            assert not _overlap(lb, box), f"{name}: the legend covers {ax.get_title()!r}"
    out = tmp_path / name
    fig.savefig(out)
    assert out.stat().st_size > 10_000
    assert not any(INTERPRETER_MARK in t.get_text() for t in fig.texts)


def test_e2e_figure_splits_indexer_attention_and_rate(tables, anchors):
    fig = draw("e2e_csa.png", tables, anchors)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("indexer" in t for t in titles) and any("attention" in t for t in titles) \
        and any("rate" in t for t in titles)
    labels = {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
    for model in ("V4-Flash", "V4-Pro"):
        for impl in ("tilelang", "triton"):
            assert f"{model} attention, {impl}" in labels
    assert any(lab.startswith("V4-Flash indexer") for lab in labels)
    rate = [ax for ax in fig.axes if "rate" in ax.get_title()][0]
    assert any(abs(y - 500) < 1e-9 for ln in rate.get_lines() for y in ln.get_ydata()), "goal line from the anchors"


def test_cpu_rows_carry_the_interpreter_mark(tables, anchors, tmp_path):
    cpu = {k: v.assign(device="cpu") for k, v in tables.items()}
    for name in ("scaling_time.png", "e2e_csa.png", "robustness.png"):
        fig = draw(name, cpu, anchors)
        assert any(INTERPRETER_MARK in t.get_text() for t in fig.texts), name
        assert INTERPRETER_MARK in fig.get_suptitle()
    assert len(draw_all(cpu, tmp_path, anchors)) == len(FIGURES)


def test_bad_rows_are_skipped_with_a_warning(tables, anchors, tmp_path):
    bad = dict(tables)
    junk = pd.DataFrame([
        dict(tables["scaling"].iloc[0], S="not a number", time_s="fast"),
        dict(tables["scaling"].iloc[1], model=None),
        dict(tables["scaling"].iloc[2], status=None, peak_extra_gib="??"),
        dict(tables["scaling"].iloc[3], time_s="1e-3x"),
    ])
    bad["scaling"] = pd.concat([tables["scaling"].astype(object), junk], ignore_index=True)
    bad["e2e"] = tables["e2e"].astype(object).assign(attn_tflops="n/a")
    with pytest.warns(FigureWarning, match="3 row"):
        written = draw_all(bad, tmp_path, anchors)
    assert {p.name for p in written} == set(FIGURES)


def test_a_failing_figure_is_reported_and_the_others_drawn(tables, anchors, tmp_path, monkeypatch):
    def broken(_tables, _anchors):
        raise RuntimeError("boom")

    monkeypatch.setitem(figures.FIGURES, "throughput.png", broken)
    with pytest.warns(FigureWarning, match="throughput.png not drawn: RuntimeError: boom"):
        written = draw_all(tables, tmp_path, anchors)
    assert "throughput.png" not in {p.name for p in written} and len(written) == len(FIGURES) - 1


def test_figures_without_their_rows_are_not_drawn(tables, anchors, tmp_path):
    only_scaling = {"scaling": tables["scaling"]}
    names = {p.name for p in draw_all(only_scaling, tmp_path, anchors)}
    assert "scaling_time.png" in names and not names & {"e2e_csa.png", "robustness.png", "scale_out.png"}
