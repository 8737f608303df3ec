"""Claims about the indexer on one GPU: the published StreamIndex table, the regime extension,
recall, the paper's algorithm re-run on our H200, the speed goals, and the peers' indexers."""
from __future__ import annotations

import pandas as pd

from ..tables import fmt_time, frac_peak_denominator, frac_peak_valid
from .anchors import Anchors
from .base import FAIL, INFO, NOT_MEASURED, PASS, Claim, judge, num, one_row, only, passes, s_text, t_and_peak
from .rows import Rows

TIMED = ("scaling", "bench")          # where a plain timed cell is looked up, in this order
SIDE_BY_SIDE = ("bench", "scaling")   # claims comparing two paths prefer the one-sweep bench table
FIT = ("ok", "oom")


def _peak(entry) -> float:
    return float(entry["peak_gb"] if "peak_gb" in entry else entry["peak_gib"])


def _within(row, t: float, m: float) -> bool:
    """No slower than ``t`` seconds and no larger than ``m`` GiB beyond the inputs."""
    peak = num(row["peak_extra_gib"])
    return row["time_s"] <= t and peak is not None and peak <= m


def _close(row, t: float, m: float, tol_t: float, tol_m: float) -> bool:
    peak = num(row["peak_extra_gib"])
    return abs(row["time_s"] / t - 1) <= tol_t and peak is not None and abs(peak / m - 1) <= tol_m


def published_claims(r: Rows, a: Anchors) -> list[Claim]:
    g, out = "published StreamIndex table", []
    mat, ref = a["published.materialize"], a.ref("published.materialize")
    model, s_fit, s_oom = mat["model"], int(mat["S"]), int(mat["first_oom_S"])
    fit = one_row(r, TIMED, path="materialize", model=model, S=s_fit, statuses=FIT)
    oom = one_row(r, TIMED, path="materialize", model=model, S=s_oom, statuses=FIT)

    def boundary(got):
        a_, b_ = got[fit[0]]["status"], got[oom[0]]["status"]
        return f"S={s_text(s_fit)}: {a_}; S={s_text(s_oom)}: {b_}", passes(a_ == "ok" and b_ == "oom")

    out.append(judge(g, f"per-head `materialize` fits S={s_text(s_fit)} and runs out of memory at S={s_text(s_oom)}",
                     f"OOM from {s_text(s_oom)} ({ref})", r, dict([fit, oom]), boundary))

    tol_t, tol_m = float(a["goals.reproduce.materialize_time_tol"]), float(a["goals.reproduce.materialize_peak_tol"])
    t, m = float(mat["time_s"]), _peak(mat)
    out.append(judge(g, f"`materialize` at S={s_text(s_fit)} reproduces the published time (±{tol_t:.0%}) and "
                     f"memory (±{tol_m:.0%})", f"{fmt_time(t)} / {m:g} GB ({ref})", r,
                     dict([one_row(r, TIMED, path="materialize", model=model, S=s_fit)]),
                     lambda got: (t_and_peak(only(got)), passes(_close(only(got), t, m, tol_t, tol_m)))))

    pub, ref = a["published.streamindex"], a.ref("published.streamindex")
    for pt in pub["points"]:
        S, t, m = int(pt["S"]), float(pt["time_s"]), _peak(pt)
        out.append(judge(g, f"`stream` at S={s_text(S)} no slower and no larger than StreamIndex",
                         f"{fmt_time(t)} / {m:g} GB ({ref})", r,
                         dict([one_row(r, TIMED, path="stream", model=pub["model"], S=S)]),
                         lambda got, t=t, m=m: (f"{t_and_peak(only(got))} ({t / only(got)['time_s']:.1f}× faster)",
                                                passes(_within(only(got), t, m)))))
    pro = a["published.streamindex_v4_pro"]
    t, m, S = float(pro["time_s"]), _peak(pro), int(pro["S"])
    out.append(judge(g, f"`stream` with V4-Pro dims (topk 1,024) at S={s_text(S)} within the published time and peak",
                     f"{fmt_time(t)} / {m:g} GB ({a.ref('published.streamindex_v4_pro')})", r,
                     dict([one_row(r, TIMED, path="stream", model=pro["model"], S=S)]),
                     lambda got: (f"{t_and_peak(only(got))} ({t / only(got)['time_s']:.1f}× faster)",
                                  passes(_within(only(got), t, m)))))
    return out


def _longest(frame: pd.DataFrame) -> int | None:
    ok = frame[frame["status"] == "ok"]
    return None if ok.empty else int(ok["S"].max())


def _first_oom(frame: pd.DataFrame) -> int | None:
    oom = frame[frame["status"] == "oom"]
    return None if oom.empty else int(oom["S"].min())


def extension_claims(r: Rows, a: Anchors) -> list[Claim]:
    g, ext, ref = "regime extension", a["published.extension"], a.ref("published.extension")
    model, factor = a["published.streamindex.model"], float(ext["factor"])

    def frame(path):
        return f"{path} rows", lambda c: r.rows(TIMED, commit=c, path=path, model=model, statuses=FIT)

    def over_materialize(got):
        ls, lm = _longest(got["stream rows"]), _longest(got["materialize rows"])
        if ls is None or lm is None:
            return f"longest ok: stream {ls}, materialize {lm}", NOT_MEASURED
        return f"{ls / lm:g}× ({s_text(ls)} / {s_text(lm)})", passes(ls / lm >= factor)

    out = [judge(g, "longest S `stream` completes over the longest per-head `materialize` completes",
                 f"{factor:g}× ({ref})", r, dict([frame("stream"), frame("materialize")]), over_materialize)]
    lo, hi = int(ext["fused_last_fit_min_S"]), int(ext["fused_last_fit_max_S"])

    def over_fused(got):
        fused = got["materialize_fused rows"]
        ls, lf, ff = _longest(got["stream rows"]), _longest(fused), _first_oom(fused)
        if ls is None or lf is None:
            return f"longest ok: stream {ls}, materialize_fused {lf}", NOT_MEASURED
        text = (f"fits to {s_text(lf)}" + (f", OOM at {s_text(ff)}" if ff else ", no OOM recorded")
                + f"; extension {ls / lf:g}×")
        if lf > hi or (ff is not None and ff <= lo):
            return text, FAIL
        pinned = ff is not None and ff == 2 * lf   # the S between the last fit and the first OOM was run
        return text, PASS if lo <= lf <= hi and pinned else NOT_MEASURED

    out.append(judge(g, "head-summed `materialize_fused` fits until S ≈ 131K–262K; extension of `stream` over it",
                     f"fits to {s_text(lo)}–{s_text(hi)} ({ref})", r,
                     dict([frame("stream"), frame("materialize_fused")]), over_fused))
    return out


def recall_claims(r: Rows, a: Anchors) -> list[Claim]:
    g, rec, ref = "recall", a["published.recall"], a.ref("published.recall")
    out = []
    for path in ("partition_merge", "stream", "stream_fp8"):
        exact = path == "stream_fp8"

        def compute(got, exact=exact):
            d = only(got)
            mean, mn = float(d["recall_mean"].mean()), float(d["recall_min"].min())
            good = mn >= 1.0 if exact else (mean >= float(rec["mean"]) - 5e-5 and mn >= float(rec["min"]))
            return f"mean {mean:.5f}, min {mn:.4f} over {len(d)} cells", passes(good)

        text = f"`{path}` tie-aware recall vs the fp64 oracle over its S, k and chunk-size sweeps"
        reference = f"mean {float(rec['mean']):.4f}, min {float(rec['min'])} ({ref})"
        if exact:
            text += " (oracle of the dequantised inputs)"
            reference = "exactly 1.0 (goal: an exact selection)"
        cells = (f"{path} cells with recall", lambda c, p=path: r.rows(
            ("recall", "design_space", "robustness"), commit=c, path=p, inputs=None, default_knobs=False,
            need=("recall_min",)))
        out.append(judge(g, text, reference, r, dict([cells]), compute))

    def overlap(got):
        d = only(got)
        ov = d["overlap_vs_materialize"]
        return (f"mean {ov.mean():.4f}, min {ov.min():.4f} over S = "
                + ", ".join(s_text(s) for s in sorted(d["S"].unique())), INFO)

    cells = ("stream_fp8 cells with overlap", lambda c: r.rows(("recall",), commit=c, path="stream_fp8",
                                                              default_knobs=False, need=("overlap_vs_materialize",)))
    out.append(judge(g, "`stream_fp8` indices overlap with the bf16 `materialize` result (reported)", "–", r,
                     dict([cells]), overlap))
    return out


def paper_algorithm_claims(r: Rows, a: Anchors) -> list[Claim]:
    g, rerun, ref = "the paper's algorithm on our H200", a["rerun.partition_merge"], a.ref("rerun.partition_merge")
    tol = float(a["goals.reproduce.partition_merge_tol"])
    model, out = rerun["model"], []
    for pt in rerun["points"]:
        S, t, m = int(pt["S"]), float(pt["time_s"]), _peak(pt)
        out.append(judge(g, f"our `partition_merge` matches the re-run of the published algorithm at S={s_text(S)} "
                         f"(±{tol:.0%})", f"{fmt_time(t)} / {m:g} GiB ({ref})", r,
                         dict([one_row(r, SIDE_BY_SIDE, path="partition_merge", model=model, S=S)]),
                         lambda got, t=t, m=m: (f"{t_and_peak(only(got))} ({only(got)['time_s'] / t:.2f}× its time)",
                                                passes(_close(only(got), t, m, tol, tol)))))
    for pt in rerun["points"]:
        S = int(pt["S"])
        st = one_row(r, SIDE_BY_SIDE, path="stream", model=model, S=S)
        pm = one_row(r, SIDE_BY_SIDE, path="partition_merge", model=model, S=S)

        def speedup(got, st=st[0], pm=pm[0]):
            x = got[pm]["time_s"] / got[st]["time_s"]
            return f"{x:.2f}×", passes(x > 1)

        out.append(judge(g, f"`stream` faster than our `partition_merge` at S={s_text(S)}", "> 1×", r,
                         dict([st, pm]), speedup))
    return out


def _frac(row, bound: float, ok) -> tuple[str, str]:
    den = frac_peak_denominator(row)
    text = f"{row['frac_peak']:.3f} ({row['tflops']:.0f} of {row['matmul_tflops']:.0f} TFLOP/s, {den} rate)"
    if not frac_peak_valid(row):
        return f"{text}: divided by the {den or 'unnamed'} rate, not the rate of the path's own dtype", NOT_MEASURED
    return text, passes(ok(row["frac_peak"], bound))


def speed_goal_claims(r: Rows, a: Anchors) -> list[Claim]:
    out = []
    goal = a["goals.speed_1m"]
    g, model, S = goal["title"], goal["model"], int(goal["S"])
    tmax, pmax = float(goal["stream_max_time_s"]), float(goal["stream_max_peak_gib"])
    fmax, fmin = float(goal["stream_fp8_max_time_s"]), float(goal["stream_min_frac_peak"])
    out.append(judge(g, f"bf16 `stream` at S={s_text(S)}: time and peak beyond the inputs",
                     f"≤ {fmt_time(tmax)}, ≤ {pmax:g} GiB (goal)", r,
                     dict([one_row(r, SIDE_BY_SIDE, path="stream", model=model, S=S)]),
                     lambda got: (t_and_peak(only(got)), passes(_within(only(got), tmax, pmax)))))
    out.append(judge(g, f"`stream_fp8` at S={s_text(S)}: time", f"≤ {fmt_time(fmax)} (goal)", r,
                     dict([one_row(r, SIDE_BY_SIDE, path="stream_fp8", model=model, S=S)]),
                     lambda got: (t_and_peak(only(got)), passes(only(got)["time_s"] <= fmax))))
    out.append(judge(g, f"`stream` frac_peak at S={s_text(S)}, of the bf16 matmul rate measured in the same sweep",
                     f"≥ {fmin:g} (goal)", r,
                     dict([one_row(r, SIDE_BY_SIDE, path="stream", model=model, S=S, need=("frac_peak",))]),
                     lambda got: _frac(only(got), fmin, lambda v, b: v >= b)))
    out.append(judge(g, f"`stream_fp8` frac_peak at S={s_text(S)}, of the fp8 e4m3 matmul rate measured in the "
                     "same sweep (an efficiency is ≤ 1)", "≤ 1", r,
                     dict([one_row(r, SIDE_BY_SIDE, path="stream_fp8", model=model, S=S, need=("frac_peak",))]),
                     lambda got: _frac(only(got), 1.0, lambda v, b: v <= b)))

    goal = a["goals.beats_paper_algorithm"]
    g, model, S, xmin = goal["title"], goal["model"], int(goal["S"]), float(goal["min_speedup"])
    st = one_row(r, ("bench",), path="stream", model=model, S=S)
    pm = one_row(r, ("bench",), path="partition_merge", model=model, S=S)

    def side_by_side(got):
        s, p = got[st[0]], got[pm[0]]
        x = p["time_s"] / s["time_s"]
        if s["sweep_id"] != p["sweep_id"]:
            return f"{x:.2f}× (rows of different sweeps)", NOT_MEASURED
        return f"{x:.2f}×", passes(x >= xmin)

    out.append(judge(g, f"`stream` over `partition_merge` at S={s_text(S)}, in one bench sweep",
                     f"≥ {xmin:g}× (goal)", r, dict([st, pm]), side_by_side))

    goal = a["goals.one_gpu_length"]
    for path, key, dtype in (("stream", "stream_S", "bf16"), ("stream_fp8", "stream_fp8_S", "fp8")):
        S = int(goal[key])

        def completes(got):
            row = only(got)
            return (f"ok: {t_and_peak(row)}" if row["status"] == "ok" else str(row["status"]).upper(),
                    passes(row["status"] == "ok"))

        out.append(judge(goal["title"], f"`{path}` completes S={s_text(S)} with {dtype} q on one GPU",
                         "completes (goal)", r,
                         dict([one_row(r, SIDE_BY_SIDE, path=path, model=goal["model"], S=S, statuses=FIT)]),
                         completes))

    goal = a["goals.pro_at_1m"]
    S, xmax = int(goal["S"]), float(goal["max_ratio"])
    pro = one_row(r, SIDE_BY_SIDE, path="stream", model="v4_pro", S=S)
    flash = one_row(r, SIDE_BY_SIDE, path="stream", model="v4_flash", S=S)

    def pro_over_flash(got):
        tp, tf = got[pro[0]]["time_s"], got[flash[0]]["time_s"]
        return f"{tp / tf:.3f}× ({fmt_time(tp)} vs {fmt_time(tf)})", passes(tp / tf <= xmax)

    out.append(judge(goal["title"], f"`stream` V4-Pro time over V4-Flash time at S={s_text(S)}",
                     f"≤ {xmax:g}× (goal)", r, dict([pro, flash]), pro_over_flash))
    return out


def peer_claims(r: Rows, a: Anchors) -> list[Claim]:
    """Our path against another project's indexer at the same dims and S: faster (and, where the
    peer's memory is given, no larger) = PASS."""
    out = []
    for name in ("tilelang_indexer_fullrow", "tilelang_indexer_bf16", "tilelang_indexer_chunked"):
        p = a[f"peers.{name}"]
        S, t = int(p["S"]), float(p["time_s"])
        m = float(p["peak_gib"]) if "peak_gib" in p else float("inf")
        ref = f"{fmt_time(t)}" + (f" / {m:g} GiB" if m != float("inf") else "") + f" ({p['label']})"
        out.append(judge("peers' indexers", f"`{p['path']}` at S={s_text(S)} against {p['label']} ({p['dtype']})",
                         ref, r, dict([one_row(r, SIDE_BY_SIDE, path=p["path"], model=p["model"], S=S)]),
                         lambda got, t=t, m=m: (f"{t_and_peak(only(got))} ({t / only(got)['time_s']:.2f}× faster)",
                                                passes(_within(only(got), t, m)))))
    return out
