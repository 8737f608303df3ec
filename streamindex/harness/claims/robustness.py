"""No cliffs: the same selection stays fast across models (V4-Flash, V4-Pro, V3.2) and tie
structures (``inputs`` random / ties8 / recency), and exact on every robustness cell; V3.2 has
scaling rows. Same-FLOP pairs are compared: V4-Pro and V4-Flash at the same S (same visible
pairs), V3.2 (ratio 1) at S/2 against V4-Flash (ratio 4) at S."""
from __future__ import annotations

from ..tables import fmt_time
from .anchors import Anchors
from .base import NOT_MEASURED, Claim, judge, one_row, only, passes, s_text
from .rows import Rows

#: Side-by-side lookups: the robustness sweep first (one sweep), then bench, then scaling.
PAIRED = ("robustness", "bench", "scaling")


def _ratio_claim(r: Rows, group: str, text: str, bound: float, slow: tuple, fast: tuple) -> Claim:
    """``slow`` time over ``fast`` time ≤ ``bound`` (both :func:`one_row` lookups)."""
    def compute(got):
        a, b = got[slow[0]], got[fast[0]]
        x = a["time_s"] / b["time_s"]
        same = "" if a["sweep_id"] == b["sweep_id"] else "; rows of different sweeps"
        return f"{x:.2f}× ({fmt_time(a['time_s'])} vs {fmt_time(b['time_s'])}{same})", passes(x <= bound)

    return judge(group, text, f"≤ {bound:g}× (goal)", r, dict([slow, fast]), compute)


def no_cliff_claims(r: Rows, a: Anchors) -> list[Claim]:
    goal = a["goals.no_cliff"]
    g, path, out = goal["title"], goal["path"], []
    bound = float(goal["pro_vs_flash_max_ratio"])
    for S in map(int, goal["pro_vs_flash_S"]):
        out.append(_ratio_claim(r, g, f"`{path}` V4-Pro over V4-Flash at S={s_text(S)} (random inputs)", bound,
                                one_row(r, PAIRED, path=path, model="v4_pro", S=S),
                                one_row(r, PAIRED, path=path, model="v4_flash", S=S)))
    bound = float(goal["v3_2_half_vs_flash_max_ratio"])
    for S in map(int, goal["v3_2_half_vs_flash_S"]):
        out.append(_ratio_claim(r, g, f"`{path}` V3.2 at S={s_text(S // 2)} over V4-Flash at S={s_text(S)} "
                                "(same visible pairs, random inputs)", bound,
                                one_row(r, PAIRED, path=path, model="v3_2", S=S // 2),
                                one_row(r, PAIRED, path=path, model="v4_flash", S=S)))
    S, bound = int(goal["ties8_S"]), float(goal["ties8_max_ratio"])
    out.append(_ratio_claim(r, g, f"`{path}` V4-Flash with keys from 8 distinct rows (ties8) over random keys at "
                            f"S={s_text(S)}", bound,
                            one_row(r, ("robustness",), path=path, model="v4_flash", S=S, inputs="ties8"),
                            one_row(r, ("robustness",), path=path, model="v4_flash", S=S, inputs="random")))
    kinds, rmin = [str(k) for k in goal["inputs"]], float(goal["min_recall"])

    def recall(got):
        d = only(got)
        missing = [k for k in kinds if k not in set(d["inputs"])]
        parts = [f"{k}: min {gk['recall_min'].min():.4f} over {len(gk)} cells" for k, gk in d.groupby("inputs")]
        text = "; ".join(parts) + (f"; no cells for {', '.join(missing)}" if missing else "")
        return text, NOT_MEASURED if missing else passes(float(d["recall_min"].min()) >= rmin)

    cells = ("robustness cells with recall",
             lambda c: r.rows(("robustness",), commit=c, inputs=None, need=("recall_min",)))
    out.append(judge(g, "tie-aware recall on every robustness cell, for every input kind",
                     f"{rmin:g} for {', '.join(kinds)} (goal)", r, dict([cells]), recall))

    goal = a["goals.v3_2_scaling"]
    smin = int(goal["min_longest_S"])
    rows = (f"{goal['path']} v3_2 scaling rows",
            lambda c: r.rows(("scaling",), commit=c, path=goal["path"], model="v3_2"))
    out.append(judge(goal["title"], f"`{goal['path']}` V3.2 scaling rows (ratio 1, topk 2,048) up to "
                     f"S ≥ {s_text(smin)}",
                     f"≥ {s_text(smin)} (goal)", r, dict([rows]),
                     lambda got: (f"longest ok S = {s_text(only(got)['S'].max())}",
                                  passes(only(got)["S"].max() >= smin))))
    return out
