"""The CSA step (``e2e`` rows): the attention's own rate against the peers' sparse-attention
kernels, the whole step against the indexer alone, and TileLang against the Triton fallback.

Attention TFLOP/s is the row's ``attn_tflops``: 4·heads·512·n FLOPs per query over its n visible
KV rows (top-k compressed entries + the 128-token window), i.e. S·heads·(topk+window)·1024·2 at
long S. ``attn_frac_peak`` divides it by the bf16 matmul rate measured in the same sweep (older
rows without that column: ``attn_tflops / matmul_tflops`` when the row's rate is bf16).
"""
from __future__ import annotations

import pandas as pd

from ..tables import attn_frac_peak, fmt_time
from .anchors import Anchors
from .base import INFO, NOT_MEASURED, Claim, judge, only, passes, s_text
from .rows import Rows

MODELS = (("v4_flash", "V4-Flash"), ("v4_pro", "V4-Pro"))


def csa_rows(r: Rows, commit, model, S=None, attn_impl=None) -> pd.DataFrame:
    return r.rows(("e2e",), commit=commit, path="csa", model=model, S=S, attn_impl=attn_impl,
                  default_knobs=False, need=("time_s",))


def _attention(got, tmin):
    d = only(got).dropna(subset=["attn_tflops"])
    if d.empty:
        return "no attn_tflops in the rows", NOT_MEASURED
    best = d.loc[d["attn_tflops"].idxmax()]
    return (f"{best['attn_tflops']:.0f} TFLOP/s ({best['attn_impl']}, {fmt_time(best['time_attn_s'])})",
            passes(best["attn_tflops"] >= tmin))


def _step(got, xmax):
    d = only(got).dropna(subset=["time_indexer_s"])
    if d.empty:
        return "no time_indexer_s in the rows", NOT_MEASURED
    best = d.loc[d["time_s"].idxmin()]
    x = best["time_s"] / best["time_indexer_s"]
    return (f"{x:.2f}× ({best['attn_impl']}: step {fmt_time(best['time_s'])}, indexer "
            f"{fmt_time(best['time_indexer_s'])})", passes(x <= xmax))


def _ahead(got, s0):
    tl, tr = (v.set_index("S")["time_attn_s"].dropna() for v in got.values())
    tl, tr = tl[tl.index >= s0], tr[tr.index >= s0]
    common = sorted(set(tl.index) & set(tr.index))
    if not common:
        return "no S measured with both kernels", NOT_MEASURED
    behind = [s for s in common if tl[s] >= tr[s]]
    only_one = sorted(set(tl.index) ^ set(tr.index))
    text = (f"ahead at {len(common) - len(behind)} of {len(common)} S"
            + (f"; behind at {', '.join(s_text(s) for s in behind)}" if behind else "")
            + (f"; S with one kernel only: {', '.join(s_text(s) for s in only_one)}" if only_one else ""))
    return text, passes(not behind)


def _frac(got):
    parts = [f"{row['attn_impl']}: {f:.2f}" for _, row in only(got).iterrows()
             if (f := attn_frac_peak(row)) is not None]
    return ("; ".join(parts) or "no attention rate in the rows"), INFO


def csa_claims(r: Rows, a: Anchors) -> list[Claim]:
    goal = a["goals.csa"]
    g, S = goal["title"], int(goal["S"])
    tmin, xmax = float(goal["min_attn_tflops"]), float(goal["max_step_over_indexer"])
    s0 = int(goal["tilelang_ahead_from_S"])
    tl, fm = a["peers.tilelang_sparse_mla"], a["peers.flashmla_sparse_prefill"]
    peer = f"≥ {tmin:g} (goal; {tl['label']} {tl['tflops_min']}–{tl['tflops_max']}, {fm['label']} {fm['tflops']})"
    out = []
    for model, label in MODELS:
        at_s = dict([(f"e2e {model} S={s_text(S)}", lambda c, m=model: csa_rows(r, c, m, S))])
        by_impl = {f"e2e {model} {i}": (lambda c, m=model, i=i: csa_rows(r, c, m, attn_impl=i))
                   for i in ("tilelang", "triton")}
        out += [
            judge(g, f"attention TFLOP/s at S={s_text(S)}, the faster kernel ({label})", peer, r, at_s,
                  lambda got: _attention(got, tmin)),
            judge(g, f"whole CSA step over the indexer's own time at S={s_text(S)} ({label})",
                  f"≤ {xmax:g}× (goal)", r, at_s, lambda got: _step(got, xmax)),
            judge(g, f"TileLang attention faster than the Triton fallback at every S ≥ {s_text(s0)} ({label})",
                  "faster at every S (goal)", r, by_impl, lambda got: _ahead(got, s0)),
            judge(g, f"attention's fraction of the measured bf16 matmul rate at S={s_text(S)} ({label})",
                  "reported", r, at_s, _frac),
        ]
    return out
