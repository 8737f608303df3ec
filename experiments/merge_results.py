"""``python -m experiments.merge_results src=FETCHED/h200 dst=results/h200``: merge the tables a
device call brought back into the repository's tables (union of rows; a table never shrinks)."""
from __future__ import annotations

import sys

from omegaconf import OmegaConf


def main(argv: list[str] | None = None) -> int:
    from streamindex.harness.results import merge_tables

    args = OmegaConf.from_cli(sys.argv[1:] if argv is None else argv)
    if "src" not in args or "dst" not in args:
        print("usage: python -m experiments.merge_results src=DIR dst=DIR", file=sys.stderr)
        return 2
    for name, (before, after) in merge_tables(args.src, args.dst).items():
        print(f"{name}: {before} -> {after} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
