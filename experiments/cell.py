"""``python -m experiments.cell [overrides]``: one job = one sweep cell (``--multirun`` sweeps).

The entry point itself is :mod:`streamindex.harness.cell_app` (installed as ``streamindex-cell``);
this module lets a source checkout run it as ``python -m experiments.cell``."""
from streamindex.harness.cell_app import main

if __name__ == "__main__":
    main()
