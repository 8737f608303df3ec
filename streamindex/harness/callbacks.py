"""Hydra callbacks of the cell app (configured under ``hydra.callbacks`` in ``conf/config.yaml``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    """At the end of a multirun: print how its cells ended (from the sweep's events file, so it
    counts the jobs of every launcher, wherever they ran) and exit 1 when any cell errored, so
    that a sweep whose cells fail never exits 0. The last line says how many errored."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .events import outcome_counts, read_events, summary_line

        sweep_dir = str(config.hydra.sweep.dir)
        workdir = Path(config.sweep.workdir) if config.sweep.workdir else Path(sweep_dir)
        evs = [e for e in read_events(workdir) if e.get("multirun") == sweep_dir]
        counts = outcome_counts(evs)
        print(f"sweep: {summary_line(counts)}", flush=True)
        if counts.get("error"):
            sys.exit(1)
