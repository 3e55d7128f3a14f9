"""How an effect reads in prose, one way everywhere (the reading, the notebook table, captions):
its size in points at the grand mean with its simultaneous interval, the relative change of the
error rate, and its verdict."""

from __future__ import annotations

import math

import pandas as pd

from ablations.report.factorial import ADJUSTMENT
from ablations.report.stats import LEVEL
from ablations.report.words import p_value

PERCENT = f"{LEVEL:.0%}"


def points(row: pd.Series | dict) -> str:
    """'-3.99 points (-5.18 to -2.80)': the estimate and its simultaneous interval, in points."""
    low, high = row["points_ci_low"], row["points_ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{row['points']:+.2f} points (no interval)"
    return f"{row['points']:+.2f} points ({low:+.2f} to {high:+.2f})"


def error(row: pd.Series | dict) -> str:
    """'errors -41% (-55% to -22%)', or '' on the points scale where it adds nothing new."""
    change = row.get("error_change", math.nan)
    if not math.isfinite(change):
        return ""
    return (f"errors {100 * change:+.0f}% ({100 * row['error_change_ci_low']:+.0f}% to "
            f"{100 * row['error_change_ci_high']:+.0f}%)")


def effect(row: pd.Series | dict, *, detail: bool = True) -> str:
    """'`notebook` vs `none`: -3.99 points (-5.18 to -2.80), errors +310% (...), differs'."""
    parts = [points(row)]
    if detail and error(row):
        parts.append(error(row))
    text = f"`{row['level']}` vs `{row['reference']}`: {', '.join(parts)}: **{row['verdict']}**"
    return text


def family_note(row: pd.Series | dict) -> str:
    """'simultaneous 95% intervals, Bonferroni over 3; Holm p = 0.004'."""
    note = row.get("verdict_note") or ""
    return (f"simultaneous {PERCENT} interval, {ADJUSTMENT} over {int(row['family'])}; Holm-adjusted "
            f"{p_value(row['p_holm'])}" + (f"; {note}" if note else ""))
