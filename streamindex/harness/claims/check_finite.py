"""The cost of the default call's input check: ``time_checked_s`` (``check_finite=True``, the
default) over ``time_s`` (``check_finite=False``), both measured in the same cell. Reported, not
judged."""
from __future__ import annotations

from .anchors import Anchors
from .base import INFO, Claim, judge, one_row, s_text
from .rows import Rows

PATHS = ("stream", "stream_fp8")


def check_finite_claims(r: Rows, a: Anchors) -> list[Claim]:
    goal = a["goals.check_finite"]
    out = []
    for S in map(int, goal["S"]):
        needs = [one_row(r, ("bench", "scaling"), path=p, model="v4_flash", S=S, need=("time_checked_s",))
                 for p in PATHS]

        def ratios(got, labels=tuple(k for k, _ in needs)):
            return ", ".join(f"`{p}` {got[k]['time_checked_s'] / got[k]['time_s']:.3f}×"
                             for p, k in zip(PATHS, labels, strict=True)), INFO

        out.append(judge(goal["title"], f"checked over unchecked call time at S={s_text(S)} (V4-Flash)", "reported",
                         r, dict(needs), ratios))
    return out
