"""The package as a user installs it: the wheel holds the library, the harness and its configs
(nothing named ``experiments`` or ``conf`` at the top level); a plain install needs only torch,
triton and numpy; ``[harness]`` in a fresh venv runs a cell, a sweep and the report from any
directory through the console scripts."""
from __future__ import annotations

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .harness_helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    (whl,) = out.glob("streamindex-*.whl")
    return whl


def test_wheel_holds_the_library_the_harness_and_its_configs(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_string(z.read(next(n for n in names if n.endswith("METADATA"))).decode())
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"streamindex", next(t for t in tops if t.endswith(".dist-info"))}
    packages = {str(p.parent.relative_to(REPO)).replace(os.sep, "/") for p in (REPO / "streamindex").rglob("*.py")
                if "__pycache__" not in p.parts}
    assert packages <= {n.rsplit("/", 1)[0] for n in names}, "a package of streamindex/ is missing from the wheel"
    confs = {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    assert {f"streamindex/harness/conf/{c}" for c in confs} <= set(names)
    plain = sorted(r.split(";")[0].split(">")[0].split("=")[0].strip() for r in meta.get_all("Requires-Dist")
                   if "extra ==" not in r)
    assert plain == ["numpy", "torch", "triton"]
    assert {"harness", "ray", "slurm", "tilelang", "dev"} <= set(meta.get_all("Provides-Extra"))
    for script in ("streamindex-reproduce = streamindex.harness.driver:main",
                   "streamindex-cell = streamindex.harness.cell_app:main",
                   "streamindex-report = streamindex.harness.cli:main"):
        assert script in entry


@pytest.mark.slow
def test_installed_harness_runs_from_any_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first, pinned: the CPU build comes from local disk; an unpinned one is a multi-GB CUDA build.
    subprocess.run(pip + ["torch==2.13.0"], check=True, capture_output=True, timeout=900)
    subprocess.run(pip + [f"{wheel}[harness]"], check=True, capture_output=True, timeout=900)
    work = tmp_path / "anywhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}

    def run(script, *args):
        res = subprocess.run([str(venv / "bin" / script), *args], cwd=work, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res.stdout

    out = run("streamindex-cell", "hardware=cpu_smoke", "model=tiny", "path=partition_merge", "S=64")
    assert out.strip().endswith("recorded in results/cpu_smoke/adhoc.csv")
    out = run("streamindex-reproduce", "hardware=cpu_smoke", "experiments=[scaling_smoke]",
              "select.paths=[materialize]", "select.S_max=64")
    assert out.strip().splitlines()[-1] == "sweep: ok 2 — no cell errored"
    assert "report: results/cpu_smoke/REPORT.md" in out
    table = (work / "results" / "cpu_smoke" / "scaling.csv").read_text()
    assert "streamindex-cell experiment=scaling_smoke hardware=cpu_smoke" in table      # the command a user can rerun
    assert "cpu_smoke" in run("streamindex-report")
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not (site / "experiments").exists() and not (site / "conf").exists()
