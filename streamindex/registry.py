"""Name → path registry. A path is one function with the common signature::

    fn(problem: IndexerProblem, *, workspace_bytes: int | None, chunk_q: int | None,
       chunk_t: int | None) -> tuple[idx int32 [B, S, topk], scores fp32 [B, S, topk]]

It must honour the full contract of :func:`streamindex.indexer_topk` (order, tie-break,
``-1`` / ``-inf`` padding). Register with ``@register_path("name", description=...)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

_PATHS: dict[str, "PathSpec"] = {}


@dataclass(frozen=True)
class PathSpec:
    name: str
    fn: Callable
    description: str
    needs_cuda: bool = False
    fp8: bool = False
    precompile: Callable | None = None


def register_path(name: str, *, description: str, needs_cuda: bool = False, fp8: bool = False,
                  precompile: Callable | None = None):
    """Decorator: register ``fn`` under ``name`` (a duplicate name is an error). ``precompile``,
    if given, is ``precompile(problem)``: build every kernel variant a call of this size may need,
    so that timings at long S do not include compilation."""

    def deco(fn):
        if name in _PATHS:
            raise ValueError(f"path {name!r} is already registered")
        _PATHS[name] = PathSpec(name, fn, description, needs_cuda, fp8, precompile)
        return fn

    return deco


def get_path(name: str) -> PathSpec:
    _load_builtin_paths()
    if name not in _PATHS:
        raise ValueError(f"path must be one of {sorted(_PATHS)}, got {name!r}")
    return _PATHS[name]


def list_paths() -> list[str]:
    """Registered path names, in registration order."""
    _load_builtin_paths()
    return list(_PATHS)


def _load_builtin_paths():
    from . import paths  # noqa: F401  (importing registers the built-in paths)
