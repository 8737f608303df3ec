"""notebooks/figures.py (jupytext, paired with figures.ipynb) executes and regenerates the figures."""
from __future__ import annotations

import shutil

import jupytext
import nbformat
from nbclient import NotebookClient

from .harness_helpers import FIXTURE_RESULTS, REPO


def test_notebook_pair_is_in_sync():
    py = jupytext.read(REPO / "notebooks" / "figures.py")
    nb = jupytext.read(REPO / "notebooks" / "figures.ipynb")
    assert [c.source for c in py.cells] == [c.source for c in nb.cells]


def test_notebook_executes_and_draws_figures(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE_RESULTS, tmp_path / "results")
    monkeypatch.setenv("STREAMINDEX_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STREAMINDEX_HARDWARE", "h200")
    monkeypatch.setenv("STREAMINDEX_FIGURES", str(tmp_path / "figs"))
    nb = jupytext.read(REPO / "notebooks" / "figures.py")
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    assert len(list((tmp_path / "figs").glob("*.png"))) >= 6
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "scaling_time.png" in text
    nbformat.validate(nb)
