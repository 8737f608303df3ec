"""Entry points of the StreamIndex harness for a source checkout (the installed package has the
same commands as console scripts; nothing here is installed):

* ``python -m experiments.cell [overrides]`` (``streamindex-cell``) — one job = one sweep cell
  (``--multirun`` sweeps through the selected Hydra launcher).
* ``python -m experiments.reproduce hardware=auto|h200|cpu_smoke experiments=[...]``
  (``streamindex-reproduce``) — the driver.
* ``python -m experiments.report`` (``streamindex-report``) — figures and REPORT.md from
  ``results/`` only.
* ``python -m experiments.merge_results src=DIR dst=DIR`` — merge tables fetched from a device call.
"""
