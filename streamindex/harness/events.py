"""Progress events of a sweep: one JSON line per event in ``<workdir>/events.jsonl``.

Every cell job appends a ``start`` event before it measures a cell and an ``end`` event with
the cell's outcome (``ok``, ``oom``, ``error``, ``skipped``, ``already_done``, ``not_run``);
a job that must stop the whole sweep (the machine is not the one the hardware profile is
for) appends a ``fatal`` event. Jobs may run in other processes or on other nodes (Ray,
SLURM): the work directory is a plain folder that all of them and the reproduce driver see.
Each event is written with one ``write`` on a file opened in append mode, so concurrent jobs
never interleave within a line. The driver follows the file (:class:`EventReader`) for its
progress bar and its summary; a Hydra callback summarises a standalone multirun from it.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

FILE_NAME = "events.jsonl"
#: Outcomes of an ``end`` event, in the order a summary lists them.
OUTCOMES = ("already_done", "ok", "oom", "error", "skipped", "not_run")


def events_path(workdir) -> Path:
    return Path(workdir) / FILE_NAME


def append_event(workdir, event: str, **fields) -> None:
    """Append one event line (``event`` plus ``fields`` plus the time) to the work directory's
    events file; does nothing when ``workdir`` is ``None``."""
    if workdir is None:
        return
    path = events_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"event": event, "t": time.time(), **fields}, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class EventReader:
    """Follows an events file: :meth:`poll` returns the events appended since the last call
    (a partly written last line is left for the next call)."""

    def __init__(self, workdir):
        self.path = events_path(workdir)
        self.offset = 0

    def poll(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue   # not an event line (never written by a job); ignore it
        return out


def read_events(workdir) -> list[dict]:
    """Every complete event in the work directory's events file."""
    return EventReader(workdir).poll()


def outcome_counts(events) -> Counter:
    """How many cells ended with each outcome."""
    return Counter(e.get("status") for e in events if e.get("event") == "end")


def summary_line(counts: Counter, *, stopped_by_budget: bool = False) -> str:
    """``ok 4, skipped 1, error 2 — 2 cells errored`` (the last line of a sweep)."""
    parts = [f"{k} {counts[k]}" for k in OUTCOMES if counts.get(k)]
    text = ", ".join(parts) if parts else "no cells"
    if stopped_by_budget:
        text += " — stopped by max_minutes; rerun the same command to continue"
    n_err = counts.get("error", 0)
    text += f" — {n_err} cell{'s' if n_err != 1 else ''} errored" if n_err else " — no cell errored"
    return text
