"""Compatibility re-export: :func:`measure_csa_cell` moved to :mod:`streamindex.harness.csa_measure`
(``streamindex/harness/cell_worker.py`` still imports it from here; remove this module once it
imports the new location)."""
from ..harness.csa_measure import measure_csa_cell

__all__ = ["measure_csa_cell"]
