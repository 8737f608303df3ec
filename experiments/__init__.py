"""Hydra entry points of the StreamIndex harness.

* ``python -m experiments.cell [overrides]`` — one job = one sweep cell (``--multirun`` sweeps).
* ``python -m experiments.reproduce hardware=auto|h200|cpu_smoke experiments=[...]`` — the driver.
* ``python -m experiments.report`` — figures and REPORT.md from ``results/`` only.
* ``python -m experiments.merge_results src=DIR dst=DIR`` — merge tables fetched from a device call.
"""
