"""Scale-out: the indexer and the CSA step on several GPUs of one host (rows with ``n_gpus`` > 1,
from the ``scale_out`` table of this hardware or of its multi-GPU sibling, e.g. ``h200x2``)."""
from __future__ import annotations

from ..tables import fmt_time
from .anchors import Anchors
from .base import NOT_MEASURED, Claim, judge, num, one_row, only, passes, s_text, t_and_peak
from .rows import Rows

EXPS = ("scale_out", "bench", "scaling")
CSA_EXPS = ("scale_out", "e2e")


def scale_out_claims(r: Rows, a: Anchors) -> list[Claim]:
    goal = a["goals.scale_out"]
    g, n, model = goal["title"], int(goal["n_gpus"]), goal["model"]
    rmin, out = float(goal["min_recall"]), []

    def completes(got, need_recall):
        row = only(got)
        if row["status"] != "ok":
            return str(row["status"]).upper(), passes(False)
        text = f"ok: {t_and_peak(row)}"
        if not need_recall:
            return text, passes(True)
        rec = num(row.get("recall_min"))
        if rec is None:
            return text + "; recall not measured", NOT_MEASURED
        return text + f"; recall min {rec:.4f}", passes(rec >= rmin)

    for path, key, need_recall in (("stream_fp8", "fp8_S", True), ("stream", "bf16_S", False)):
        S = int(goal[key])
        text = f"`{path}` completes S={s_text(S)} on {n} GPUs" + (" with exact recall" if need_recall else "")
        out.append(judge(g, text, "completes" + (f", recall {rmin:g}" if need_recall else "") + " (goal)", r,
                         dict([one_row(r, EXPS, path=path, model=model, S=S, n_gpus=n,
                                       statuses=("ok", "oom", "error"))]),
                         lambda got, nr=need_recall: completes(got, nr)))
    S = int(goal["speedup_S"])
    for path, key in (("stream", "min_stream_speedup"), ("csa", "min_csa_speedup")):
        bound = float(goal[key])
        kw = dict(path=path, model=model, S=S) if path != "csa" else dict(
            path=path, model=model, S=S, attn_impl="tilelang", default_knobs=False)
        exps = EXPS if path != "csa" else CSA_EXPS
        one, many = one_row(r, exps, n_gpus=1, **kw), one_row(r, exps, n_gpus=n, **kw)

        def speedup(got, k1=one[0], kn=many[0], bound=bound):
            t1, tn = got[k1]["time_s"], got[kn]["time_s"]
            return f"{t1 / tn:.2f}× ({fmt_time(t1)} → {fmt_time(tn)})", passes(t1 / tn >= bound)

        out.append(judge(g, f"`{path}` speed-up of {n} GPUs over 1 at S={s_text(S)}", f"≥ {bound:g}× (goal)", r,
                         dict([one, many]), speedup))
    return out
