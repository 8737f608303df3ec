"""Cells not worth running, decided only from rows already recorded (never guessed):

* the same cell family (every configuration field but S) ran out of memory at a smaller S —
  memory grows with S, so a larger S cannot fit either;
* the same family timed out at a smaller S;
* the family's largest completed S, extrapolated by the quadratic work (x4 per doubling of S),
  predicts one call longer than ``skip_predicted_call_s``.

Each rule returns the reason recorded in the ``skipped`` row, naming the row it rests on.
"""
from __future__ import annotations

import math

import pandas as pd

from . import schema


def _family_rows(spec, rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return rows
    fam = rows.apply(schema.family_id, axis=1)
    return rows[(fam == spec.family_id) & (rows["S"].astype(float) < spec.S)]


def predicted_call_s(spec, rows: pd.DataFrame) -> float | None:
    """One call's time at ``spec.S`` extrapolated from the family's largest ok S (``None`` if unknown)."""
    fam = _family_rows(spec, rows)
    ok = fam[(fam["status"] == "ok") & fam["time_s"].notna()] if not fam.empty else fam
    if ok.empty:
        return None
    best = ok.loc[ok["S"].astype(float).idxmax()]
    return float(best["time_s"]) * (spec.S / float(best["S"])) ** 2


def skip_reason(spec, rows: pd.DataFrame) -> str | None:
    """Why ``spec`` need not run given the recorded ``rows`` of its table, or ``None``."""
    fam = _family_rows(spec, rows)
    if not fam.empty:
        oom = fam[fam["status"] == "oom"]
        if not oom.empty:
            s = int(oom["S"].astype(float).min())
            return (f"{spec.path} ran out of memory at S={s} (recorded row, {_row_date(oom, s)}); "
                    f"memory grows with S, so S={spec.S} cannot fit")
        reason = fam["reason"].astype(str)
        tout = fam[(fam["status"] == "error") & reason.str.startswith("timeout")]
        if not tout.empty:
            s = int(tout["S"].astype(float).min())
            return f"{spec.path} timed out at S={s} (recorded row); S={spec.S} takes longer"
    limit = spec.skip_predicted_call_s
    if limit is not None and spec.measure_time:
        pred = predicted_call_s(spec, rows)
        if pred is not None and pred > limit:
            ok = fam[(fam["status"] == "ok") & fam["time_s"].notna()]
            best = ok.loc[ok["S"].astype(float).idxmax()]
            return (f"predicted {pred:.0f} s per call (x4 per doubling of S from the recorded "
                    f"{float(best['time_s']):.2f} s at S={int(float(best['S']))}) exceeds "
                    f"skip_predicted_call_s={limit:g}")
    return None


def _row_date(df: pd.DataFrame, S: int) -> str:
    d = df[df["S"].astype(float) == S]["date"]
    v = d.iloc[0] if len(d) else None
    return f"date {v}" if isinstance(v, str) and v else "date unknown"


def expected_cell_s(spec, rows: pd.DataFrame) -> float:
    """Rough wall time of running the cell (for ``max_minutes``): warm-up + timed calls."""
    pred = predicted_call_s(spec, rows)
    if pred is None or math.isnan(pred):
        return 0.0
    calls = 1 + (spec.warmup if not (spec.proxy_warmup_above_S and spec.S > spec.proxy_warmup_above_S) else 0)
    if spec.measure_time:
        calls += max(0, min(spec.repeats - 1, int(spec.time_budget_s // max(pred, 1e-9))))
    return pred * calls
