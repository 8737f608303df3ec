"""notebooks/figures.py (jupytext, paired with figures.ipynb) executes and regenerates every figure
of the report. The notebook tools are optional (the ``dev`` extra): without them these tests skip."""
from __future__ import annotations

import shutil

import pytest

from streamindex.harness.figures import draw_all
from streamindex.harness.report import load_report_tables

from .harness_helpers import FIXTURE_RESULTS, REPO

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def test_notebook_pair_is_in_sync():
    py = jupytext.read(REPO / "notebooks" / "figures.py")
    nb = jupytext.read(REPO / "notebooks" / "figures.ipynb")
    assert [c.source for c in py.cells] == [c.source for c in nb.cells]


def test_notebook_executes_and_draws_every_figure(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE_RESULTS, tmp_path / "results")
    monkeypatch.setenv("STREAMINDEX_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STREAMINDEX_HARDWARE", "h200")
    monkeypatch.setenv("STREAMINDEX_FIGURES", str(tmp_path / "figs"))
    nb = jupytext.read(REPO / "notebooks" / "figures.py")
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    _, tables = load_report_tables(tmp_path / "results", "h200")
    expected = {p.name for p in draw_all(tables, tmp_path / "report_figs")}
    assert {p.name for p in (tmp_path / "figs").glob("*.png")} == expected
    assert "scale_out.png" in expected and "robustness.png" in expected
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "skipped" not in text and "e2e_csa.png" in text
    nbformat.validate(nb)
