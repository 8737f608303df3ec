"""``python -m experiments.report [results_dir=results] [hardware=h200] [anchors=conf/anchors.yaml]``:
regenerate the figures and ``REPORT.md`` of every ``results/<hardware>/`` folder (or of one) from
its tables only — nothing is measured. ``anchors`` points at another references-and-goals file."""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf


def main(argv: list[str] | None = None) -> int:
    from streamindex.harness.claims import load_anchors
    from streamindex.harness.report import build_report

    args = OmegaConf.from_cli(sys.argv[1:] if argv is None else argv)
    unknown = set(args) - {"results_dir", "hardware", "anchors"}
    if unknown:
        print(f"error: unknown option(s) {sorted(unknown)}; use results_dir=DIR, hardware=NAME and/or anchors=FILE",
              file=sys.stderr)
        return 2
    try:
        anchors = load_anchors(args.get("anchors"))
    except (OSError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.get("results_dir", "results"))
    names = [args.hardware] if args.get("hardware") else sorted(
        p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.csv"))) if root.exists() else []
    if not names:
        print(f"no result tables under {root}/")
        return 0
    for name in names:
        out = build_report(root, name, anchors)
        print(f"{name}: {out if out else 'no tables'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
