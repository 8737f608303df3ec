"""The README can be followed as written: every fenced block whose first line is a ``# CPU``
comment runs, exactly as written, in a copy of the repository (bash blocks with bash, python
blocks with python; ``python`` is this interpreter, ``TRITON_INTERPRET`` is not preset), and the
README points only at files inside the repository."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .harness_helpers import REPO

README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
IGNORE = shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", "__pycache__", ".pytest_cache", "*.egg-info",
                                ".dev", "build", "dist")


def blocks(marker: str) -> list[tuple[str, str]]:
    """``(language, source)`` of the README's fenced blocks whose first line is ``# <marker>``."""
    out = []
    for lang, body in FENCE.findall(README.read_text()):
        first = body.lstrip().splitlines()[0] if body.strip() else ""
        if re.match(rf"#\s*{marker}\b", first):
            out.append((lang or "bash", body))
    return out


CPU_BLOCKS = blocks("CPU")


def _label(block) -> str:
    lang, body = block
    return f"{lang}:{body.strip().splitlines()[0][:60]}"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the repository with a ``python`` on PATH that is this interpreter."""
    root = tmp_path_factory.mktemp("readme") / "repo"
    shutil.copytree(REPO, root, ignore=IGNORE)
    bin_dir = root.parent / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"        # a script, not a link: a linked venv python would lose its venv
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    return root, env


def test_readme_has_the_cpu_examples():
    text = "\n".join(body for _, body in CPU_BLOCKS)
    for needle in ("indexer_topk", "python -m experiments.cell", "--multirun", "dry_run=true",
                   "python -m experiments.report", "jupyter execute"):
        assert needle in text, needle
    assert any(lang == "python" for lang, _ in CPU_BLOCKS)
    assert blocks("GPU"), "the GPU examples are marked as such"


@pytest.mark.parametrize("block", CPU_BLOCKS, ids=[_label(b) for b in CPU_BLOCKS])
def test_cpu_block_runs_as_written(block, checkout):
    lang, body = block
    root, env = checkout
    if "jupyter execute" in body:
        pytest.importorskip("nbclient")
        pytest.importorskip("ipykernel")
    cmd = [sys.executable, "-c", body] if lang == "python" else ["bash", "-euo", "pipefail", "-c", body]
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=420)
    assert res.returncode == 0, f"{_label(block)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    for table in re.findall(r"results/[\w./-]+\.csv", body):   # the rows are where the README says
        assert (root / table).is_file(), table


def test_readme_and_docs_stay_inside_the_repository():
    for doc in (README, REPO / "docs" / "DESIGN.md"):
        text = doc.read_text()
        assert "../shared" not in text and "shared folder" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to a missing file: {target}"
