"""The reproduction harness: Hydra sweeps of isolated cells, result tables, figures and the
claims report (``pip install "streamindex[harness]"``). One concern per module:

* entry points — ``driver`` (``streamindex-reproduce``: experiments → Hydra multiruns, progress,
  report), ``cell_app`` (``streamindex-cell``: one Hydra job = one cell), ``cli``
  (``streamindex-report``), ``callbacks`` (a multirun's summary and exit code);
* configuration — ``config`` (schema + validation; the configs in ``conf/``), ``compose``
  (composition helpers), ``cellspec`` (one cell as a record);
* one cell — ``runner`` (resume, skip rules, budget, calibration, the row), ``isolation``
  (own process group), ``calibration`` (matmul rates per sweep), ``cell_worker`` (inside the
  cell's process), ``measure`` (timing, memory, matmul rate), ``skip_rules``, ``events``
  (progress events);
* records and output — ``schema``, ``results`` (tables), ``provenance``, ``tables`` /
  ``figures`` / ``claims`` / ``report``.
"""
