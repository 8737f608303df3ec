"""Run one unit of work (a cell, a calibration) in its own process, in its own process group.

Why this exists beside Hydra's launchers: a launcher decides *where* a cell job runs (this
process, a submitit job, a Ray worker, a SLURM node); none of them protects the job from the
cell. An out-of-memory error or a leaked allocator state must not reach the next cell that the
same process runs (the basic launcher runs every job in one process), a crash or a hang must
become a row, and a killed sweep must not leave a cell running on the GPU. So every cell (and
the calibration) is measured in a child process that

* leads its own process group (a new session): a timeout, an interrupt or the end of the job
  kills the whole group, including whatever the cell started (compile workers, ``torchrun``
  ranks);
* is killed by the kernel when the job process dies, even by SIGKILL (``PR_SET_PDEATHSIG`` on
  Linux);
* hands its result back through a pipe (``fork``) or a file in the job's own output directory
  (``spawn``, ``torchrun``): nothing is left in ``/tmp``.

:func:`run_isolated` runs a function named ``"module:function"`` with JSON-able keyword
arguments either in a forked child (``fork``: fast, the parent has already imported torch and
the library, never CUDA; the parent must be single-threaded) or in a fresh interpreter
(``spawn``: ``python -m streamindex.harness.isolation FUNC IN_JSON OUT_JSON``, for a
multi-threaded parent such as a Ray worker). :func:`run_command` runs any command the same way
(``torchrun`` for a distributed cell).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


@dataclass
class Outcome:
    """``result``: what the child returned (``None`` if it returned nothing); ``status``:
    ``"ok"``, ``"timeout"``, ``"exit <code>"`` or ``"signal <n>"``."""
    result: dict | None
    status: str


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux only; a
    no-op elsewhere). Called first thing in every child."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def kill_group(pid: int, *, leader_alive: bool = True) -> None:
    """SIGKILL the process group led by our child ``pid`` (and ``pid`` itself, while it is alive
    and not yet reaped, in case it had not yet made its own group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if leader_alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _exit_status(code: int | None) -> str:
    if code == 0:
        return "ok"
    if code is not None and code < 0:
        return f"signal {-code}"
    return f"exit {code}"


def _fork_child(target, args, conn, parent_pid: int) -> None:
    os.setsid()
    die_with_parent()
    if os.getppid() != parent_pid:      # the parent died before PDEATHSIG was armed
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    result = target(*args)
    conn.send(result)
    conn.close()


def run_forked(target, args: tuple, *, timeout_s: float) -> Outcome:
    """``target(*args)`` in a forked child (see the module docstring); its return value (a
    picklable dict) comes back through a pipe."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_fork_child, args=(target, args, send, os.getpid()), daemon=False)
    result, status = None, None
    try:
        proc.start()
        send.close()
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            if recv.poll(min(left, 1.0)):
                try:
                    result = recv.recv()
                except EOFError:          # the child died without sending
                    pass
                break
            if not proc.is_alive() and not recv.poll(0):
                break
        if status is None:
            proc.join(max(0.0, deadline - time.monotonic()))
            status = "timeout" if proc.is_alive() else _exit_status(proc.exitcode)
    finally:
        if proc.pid is not None and proc.is_alive():
            kill_group(proc.pid)
        if proc.pid is not None:
            proc.join()
        recv.close()
    return Outcome(result, status)


def _popen_child() -> None:
    die_with_parent()


def run_command(argv: list[str], *, timeout_s: float, out_path, env: dict | None = None,
                cwd=None) -> Outcome:
    """Run ``argv`` as a new session (its own process group) with ``env``; the result is the
    JSON object the command wrote to ``out_path`` (removed afterwards), if any."""
    out_path = Path(out_path)
    with contextlib.suppress(FileNotFoundError):
        out_path.unlink()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True, preexec_fn=_popen_child)
    try:
        try:
            code = proc.wait(timeout=timeout_s)
            status = _exit_status(code)
        except subprocess.TimeoutExpired:
            status = "timeout"
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait()
        else:   # stray members of its group (ranks, workers) go too; the group outlives its leader
            kill_group(proc.pid, leader_alive=False)
    result = None
    if out_path.exists():
        with contextlib.suppress(ValueError, OSError):
            result = json.loads(out_path.read_text())
        with contextlib.suppress(OSError):
            out_path.unlink()
    return Outcome(result, status)


def resolve(func: str):
    """The function named ``"package.module:function"``."""
    import importlib

    module, _, name = func.partition(":")
    if not module or not name:
        raise ValueError(f"func must be 'module:function', got {func!r}")
    return getattr(importlib.import_module(module), name)


def _call(func: str, kwargs: dict):
    return resolve(func)(**kwargs)


def run_isolated(func: str, kwargs: dict, *, start_method: str, timeout_s: float, scratch_dir,
                 env: dict | None = None) -> Outcome:
    """``func(**kwargs)`` in an isolated child started by ``start_method`` (``fork`` or
    ``spawn``); its return value (a JSON-able dict) is the outcome's result. ``spawn`` passes
    arguments and result through two files in ``scratch_dir`` (removed afterwards) and runs the
    child with ``env`` (default: this process's environment)."""
    if start_method == "fork":
        return run_forked(_call, (func, kwargs), timeout_s=timeout_s)
    if start_method != "spawn":
        raise ValueError(f"start_method must be 'fork' or 'spawn', got {start_method!r}")
    scratch = Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    fd, in_path = tempfile.mkstemp(dir=scratch, prefix="isolated-", suffix=".in.json")
    out_path = Path(in_path[:-len(".in.json")] + ".out.json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(kwargs, fh)
        argv = [sys.executable, "-m", "streamindex.harness.isolation", func, in_path, str(out_path)]
        return run_command(argv, timeout_s=timeout_s, out_path=out_path, env=env)
    finally:
        for p in (Path(in_path), out_path):
            with contextlib.suppress(OSError):
                p.unlink()


def main(argv: list[str] | None = None) -> int:
    """``python -m streamindex.harness.isolation FUNC IN_JSON OUT_JSON``: the ``spawn`` child."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m streamindex.harness.isolation module:function IN_JSON OUT_JSON", file=sys.stderr)
        return 2
    func, in_path, out_path = argv
    kwargs = json.loads(Path(in_path).read_text())
    result = _call(func, kwargs)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, default=str)
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    die_with_parent()
    sys.exit(main())
