"""``python -m experiments.reproduce hardware=auto|h200|cpu_smoke experiments=[...] launcher=...``:
the reproduce driver (:mod:`streamindex.harness.driver`, installed as ``streamindex-reproduce``).

It runs each block of each experiment as a Hydra multirun of the cell app through the selected
launcher, prints progress and the bench table, regenerates figures and ``REPORT.md``, and exits
1 when any cell errored. ``max_minutes=8`` stops cleanly between cells (the same command
resumes); ``select.paths=[stream] select.models=[v4_flash] select.S_max=262144
select.blocks=[...]`` runs part of the experiments; ``dry_run=true`` lists the multiruns and
cells with their commands."""
from streamindex.harness.driver import main

if __name__ == "__main__":
    main()
