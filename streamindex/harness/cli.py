"""``streamindex-report [results_dir=results] [hardware=h200]``: regenerate the figures and
``REPORT.md`` of every ``<results_dir>/<hardware>/`` folder (or of one) from its tables only —
nothing is measured. (``python -m experiments.report`` in a checkout does the same.)"""
from __future__ import annotations

import sys
from pathlib import Path


def report_main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from .report import build_report

    args = OmegaConf.from_cli(sys.argv[1:] if argv is None else argv)
    unknown = set(args) - {"results_dir", "hardware"}
    if unknown:
        print(f"error: unknown option(s) {sorted(unknown)}; use results_dir=DIR and/or hardware=NAME",
              file=sys.stderr)
        return 2
    root = Path(args.get("results_dir", "results"))
    if args.get("hardware"):
        names = [str(args.hardware)]
    elif root.exists():
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.csv")))
    else:
        names = []
    if not names:
        print(f"no result tables under {root}/")
        return 0
    for name in names:
        out = build_report(root, name)
        print(f"{name}: {out if out else 'no tables'}")
    return 0


def main() -> None:
    sys.exit(report_main())


if __name__ == "__main__":
    main()
