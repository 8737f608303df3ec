"""The claim record, its verdicts, and :func:`judge`, which applies the one-commit rule.

A verdict is PASS / FAIL when the rows of one commit decide the claim, NOT MEASURED when rows
are missing or would have to come from several commits (the value those mixed rows would give
is still shown, marked as such), INFO for figures that are reported, not judged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..tables import fmt_time
from .rows import Rows, at_one_commit

PASS, FAIL, NOT_MEASURED, INFO = "PASS", "FAIL", "NOT MEASURED", "INFO"
VERDICTS = (PASS, FAIL, NOT_MEASURED, INFO)


@dataclass
class Claim:
    """One line of the report: ``reference`` is the published figure or goal (with its source
    label), ``source`` the tables and the commit the measurement comes from."""

    group: str
    claim: str
    published: str
    measured: str
    verdict: str
    source: str = ""


def num(x) -> float | None:
    """``float(x)``, or None for missing / non-numeric values."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def gib(x) -> str:
    v = num(x)
    return "–" if v is None else f"{v:.2f} GiB"


def t_and_peak(row) -> str:
    return f"{fmt_time(row['time_s'])} / {gib(row['peak_extra_gib'])}"


def s_text(S) -> str:
    return f"{int(S):,}"


def judge(group: str, text: str, reference: str, r: Rows, needs: dict[str, Callable[[str], object]],
          compute: Callable[[dict], tuple[str, str]]) -> Claim:
    """A claim from the rows of one commit. ``needs``: label → lookup (a function of the commit
    key); ``compute(got)`` → ``(measured text, verdict)`` from the rows found."""
    p = at_one_commit(r, needs)
    if p.missing:
        return Claim(group, text, reference, "no rows: " + ", ".join(p.missing), NOT_MEASURED)
    measured, verdict = compute(p.got)
    if p.commit is None:
        return Claim(group, text, reference,
                     f"{measured} — from rows of several commits ({p.source()}), so not judged",
                     NOT_MEASURED, p.source())
    return Claim(group, text, reference, measured, verdict, p.source())


def only(got: dict):
    """The single value of a one-lookup ``got``."""
    (v,) = got.values()
    return v


def what(path=None, model=None, S=None, **kw) -> str:
    """A lookup's label for the report: ``stream v4_pro S=65,536 inputs=ties8``."""
    parts = [str(x) for x in (path, model) if x is not None]
    if S is not None:
        parts.append(f"S={s_text(S)}")
    parts += [f"{k}={v}" for k, v in kw.items() if v is not None]
    return " ".join(parts)


def one_row(r: Rows, exps, **filters) -> tuple[str, Callable[[str], object]]:
    """A lookup of one row for :func:`judge`: ``(label, commit -> row or None)``."""
    label = what(**{k: filters.get(k) for k in ("path", "model", "S")},
                 **{k: v for k, v in filters.items() if k in ("inputs", "n_gpus", "attn_impl")})
    if filters.get("need"):
        label += " with " + ", ".join(filters["need"])
    return label, lambda c: r.one(exps, commit=c, **filters)


def passes(ok: bool) -> str:
    return PASS if ok else FAIL
