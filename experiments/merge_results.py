"""``python -m experiments.merge_results src=FETCHED/h200 dst=results/h200``: merge the tables a
device call brought back into the repository's tables (union of rows; a table never shrinks).

Damaged lines of either side are left out of the merge and kept in ``<table>.csv.quarantine``
next to their table (a warning names it). Exit status: 0 merged, 1 a table could not be read
(the message names the file and the line), 2 bad arguments."""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

USAGE = "usage: python -m experiments.merge_results src=DIR dst=DIR"


def main(argv: list[str] | None = None) -> int:
    from streamindex.harness.results import TableReadError, merge_tables

    args = OmegaConf.from_cli(sys.argv[1:] if argv is None else argv)
    if set(args) != {"src", "dst"}:
        print(USAGE, file=sys.stderr)
        return 2
    src = Path(str(args.src))
    if not src.is_dir():
        print(f"error: src={src} is not a directory\n{USAGE}", file=sys.stderr)
        return 2
    try:
        merged = merge_tables(src, str(args.dst))
    except (TableReadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not merged:
        print(f"no tables with rows under {src}/")
    for name, (before, after) in merged.items():
        print(f"{name}: {before} -> {after} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
