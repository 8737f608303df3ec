"""Where and with what a row was measured: GPU name and driver, CUDA / torch / triton / tilelang
versions, git commit (and whether the tree had uncommitted changes), hostname, date.

:func:`host_provenance` needs neither torch nor CUDA (safe in the sweep's parent process, which
must not initialise CUDA before forking cells); :func:`device_provenance` runs inside a cell's
process, where CUDA may be initialised.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> tuple[str, bool | None]:
    """``(commit, dirty)``; commit is ``"none"`` when the repository has no commit yet and
    ``"unknown"`` outside git. A copy of the tree without its history (the GPU machine gets one)
    names its commit in ``STREAMINDEX_GIT_COMMIT`` (and ``STREAMINDEX_GIT_DIRTY=0/1``)."""
    if os.environ.get("STREAMINDEX_GIT_COMMIT"):
        dirty = os.environ.get("STREAMINDEX_GIT_DIRTY")
        return os.environ["STREAMINDEX_GIT_COMMIT"], None if dirty is None else dirty == "1"
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        commit = "none" if _git("rev-parse", "--git-dir") is not None else "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def host_provenance() -> dict:
    """Provenance known without importing torch."""
    commit, dirty = git_state()
    return {
        "torch_version": _version("torch"), "triton_version": _version("triton"),
        "tilelang_version": _version("tilelang"), "python_version": platform.python_version(),
        "git_commit": commit, "git_dirty": dirty, "hostname": socket.gethostname(),
    }


def device_provenance(device: str) -> dict:
    """GPU name, driver and CUDA version (``"cpu"`` / ``""`` on CPU). Call inside a cell process."""
    import torch

    if device != "cuda":
        return {"gpu_name": "cpu", "gpu_driver": "", "cuda_version": ""}
    name = torch.cuda.get_device_name(0)
    return {"gpu_name": name, "gpu_driver": _nvidia_driver(), "cuda_version": torch.version.cuda or ""}


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def detect_cuda_gpu() -> str | None:
    """Name of GPU 0 when a CUDA GPU is usable, else ``None``. Runs torch in a child process so
    that the caller never initialises CUDA (cells are forked from it)."""
    import sys

    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    name = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    return name or None
