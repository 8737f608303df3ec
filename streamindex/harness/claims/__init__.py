"""Every claim the report checks, computed from result rows and marked PASS / FAIL / NOT
MEASURED (INFO for figures that are reported, not judged).

Reference figures (the StreamIndex paper, the H200 re-run of its algorithm, peers' kernels) and
the goals' thresholds come from ``conf/anchors.yaml`` (:mod:`.anchors`); each claim uses rows of
one git commit (:mod:`.rows`). Only rows measured on a GPU decide a claim: CPU smoke rows leave
every claim NOT MEASURED.
"""
from __future__ import annotations

import warnings

from ..tables import attn_frac_peak, commit_key
from .anchors import Anchors, anchors_path, load_anchors
from .base import FAIL, INFO, NOT_MEASURED, PASS, VERDICTS, Claim
from .check_finite import check_finite_claims
from .csa import csa_claims
from .indexer import (
    extension_claims,
    paper_algorithm_claims,
    peer_claims,
    published_claims,
    recall_claims,
    speed_goal_claims,
)
from .robustness import no_cliff_claims
from .rows import Rows, at_one_commit
from .scale_out import scale_out_claims

GROUPS = (published_claims, extension_claims, recall_claims, paper_algorithm_claims, speed_goal_claims,
          no_cliff_claims, csa_claims, scale_out_claims, peer_claims, check_finite_claims)


def all_claims(tables: dict, anchors: Anchors | None = None) -> list[Claim]:
    """Every claim from ``{experiment: rows}`` (every recorded attempt, or the current rows).

    A group whose rows break its computation does not stop the others: it becomes one NOT
    MEASURED line naming the error, with a ``RuntimeWarning``. A missing anchors entry is an
    error (``KeyError`` naming the key and the file), not a verdict."""
    a = anchors if anchors is not None else load_anchors()
    r = Rows(tables)
    out = []
    for group in GROUPS:
        try:
            out += group(r, a)
        except KeyError as exc:
            if str(a.path) in str(exc):
                raise
            out.append(_broken(group, exc))
        except (TypeError, ValueError, ZeroDivisionError, AttributeError, IndexError) as exc:
            out.append(_broken(group, exc))
    return out


def _broken(group, exc: Exception) -> Claim:
    name = group.__name__.removesuffix("_claims").replace("_", " ")
    warnings.warn(f"claims of {name!r} not computed: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
    return Claim(name, "(this group's claims could not be computed from the rows)", "–",
                 f"{type(exc).__name__}: {exc}", NOT_MEASURED)


__all__ = ["PASS", "FAIL", "NOT_MEASURED", "INFO", "VERDICTS", "Claim", "Anchors", "Rows", "all_claims",
           "anchors_path", "load_anchors", "at_one_commit", "commit_key", "attn_frac_peak"]
