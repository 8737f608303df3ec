"""The reference figures and goals of the claims report, read from ``conf/anchors.yaml``.

Nothing here holds a number: :func:`load_anchors` reads the data file (``$STREAMINDEX_ANCHORS``
if set, else ``conf/anchors.yaml`` of the checkout this package lives in, else of the working
directory) and :class:`Anchors` looks entries up by dotted key, raising a ``KeyError`` that names
the key and the file when an entry the report needs is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

ANCHORS_ENV = "STREAMINDEX_ANCHORS"


def anchors_path() -> Path:
    """The anchors file in use; ``FileNotFoundError`` lists the places searched."""
    env = os.environ.get(ANCHORS_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[3] / "conf" / "anchors.yaml",      # a checkout
                   Path(__file__).resolve().parents[1] / "conf" / "anchors.yaml",      # an installed package
                   Path.cwd() / "conf" / "anchors.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("anchors file not found; looked at " + ", ".join(str(c) for c in candidates)
                            + f" (set {ANCHORS_ENV}=PATH to point at one)")


class Anchors:
    """Read-only view of the anchors file: ``a["goals.csa.min_attn_tflops"]``."""

    def __init__(self, data: dict, path: Path | str = "<memory>"):
        if not isinstance(data, dict):
            raise TypeError(f"{path}: the anchors file must hold a mapping, got {type(data).__name__}")
        self.data, self.path = data, Path(path)

    def __getitem__(self, dotted: str):
        node = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"{self.path}: missing entry {dotted!r}")
            node = node[part]
        return node

    def get(self, dotted: str, default=None):
        try:
            return self[dotted]
        except KeyError:
            return default

    def ref(self, dotted: str) -> str:
        """The label the report prints next to a figure of the entry ``dotted``."""
        return str(self[dotted + ".label"])

    def references(self) -> list[tuple[str, dict]]:
        """Every labelled reference (published, re-run, peers, hardware) as ``(key, entry)``."""
        out = []
        for section in ("published", "rerun", "peers", "hardware"):
            for name, entry in (self.data.get(section) or {}).items():
                if isinstance(entry, dict) and "source" in entry:
                    out.append((f"{section}.{name}", entry))
        return out


def load_anchors(path: str | Path | None = None) -> Anchors:
    """Parse the anchors file (``path``, or :func:`anchors_path`)."""
    p = Path(path) if path is not None else anchors_path()
    with open(p, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    a = Anchors(data, p)
    for key in ("published", "rerun", "peers", "goals"):
        a[key]  # noqa: B018 - fail early, naming the file, if a section is missing
    return a
