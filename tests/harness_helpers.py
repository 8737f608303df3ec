"""Shared helpers of the harness tests: run an entry point the way a user does, and look at the
processes it leaves behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE_RESULTS = REPO / "tests" / "fixtures" / "results"


def _env() -> dict:
    """This environment (conftest switches the Triton interpreter on where there is no GPU) with
    the checkout first on the path."""
    return dict(os.environ, PYTHONPATH=str(REPO))


def run_module(module: str, *args: str, timeout: int = 240, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def start_module(module: str, *args: str, cwd=REPO) -> subprocess.Popen:
    """Start an entry point in the background (in its own process group, as a shell would)."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def descendants(pid: int) -> set[int]:
    """Every living process whose chain of parents leads to ``pid`` (other sessions included)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parent[int(d.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        kids = {p for p, pp in parent.items() if pp in frontier} - out
        out |= kids
        frontier = kids
    return out


def alive(pids) -> set[int]:
    """The pids of ``pids`` that are still running (not gone, not zombies)."""
    out = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(p)
    return out
