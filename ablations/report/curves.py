"""The effect at every budget, from the validation split only (the test set is read once, at the end).

- `val_curves`: validation accuracy per epoch for every cell, mean over seeds with an interval.
- `effect_by_epoch`: each factor's main effect at every epoch on the study's scale (the same model
  as the final verdicts, fitted to that epoch's validation accuracy), back in points.
- `plateau`: per cell, the rise of a least-squares line through its seed-mean validation accuracy
  over the last fifth of training; a cell whose line rises less than the declared plateau
  (`[analysis] plateau_points`) has plateaued. Beside that verdict, what the seeds resolve: the rise's
  interval lies under the plateau ("gains under 0.2"), at or over it ("gains 0.2 or more"), or straddles it;
  and, as a sensitivity column, the rise of a Theil-Sen line through the same points, which one epoch's
  dip (a constant learning rate's jitter) barely moves.
- `budgets`: for a budget pilot (a grid with an `epochs` axis), whether every cell plateaued at
  each budget, and the smallest budget at which they all did.

A step schedule's effect at an epoch before its end compares a schedule that has not finished with
one that has no end to reach: it is only defined at the last epoch of its own schedule.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as sps

from ablations.config import Status
from ablations.report import analysis, stats
from ablations.report import factorial as fm
from ablations.report.runs import Runs
from ablations.report.scale import LOGIT, PCT, centred_logit, expit, to_scale

BUDGET = "epochs"  # the axis a budget pilot varies
LAST_FIFTH = 0.2
UNRESOLVED = "not resolved"


def _validated(r: Runs) -> pd.DataFrame:
    """Epoch rows of done runs that have a validation accuracy, with the run's validation size."""
    rows = r.epochs[(r.epochs["status"] == Status.DONE) & r.epochs["val_acc"].notna()]
    return rows.merge(r.runs[["run_id", "val_images"]], on="run_id", how="left")


def val_curves(r: Runs) -> pd.DataFrame:
    """Per cell and epoch: n seeds, mean validation accuracy (%) and the t interval of its seeds'
    mean on the logit scale, back in percent: a band over seeds that stays inside 0-100 even with
    two seeds, where a t interval in points spans hundreds. The validation set's own binomial noise
    is left out: every cell is measured on the same images, so it does not separate the curves."""
    rows = []
    for key, group in _validated(r).groupby([*r.keys, "epoch"], observed=True, sort=True):
        seeds = stats.summarize(to_scale(group["val_acc"], group["val_images"], LOGIT))
        mean = float(group["val_acc"].mean())
        # the band's half-width from the seeds' logits, centred on the mean the line draws (the
        # half-count correction of the logits would pull a centre at 98.7% of 102 images to 98.2%)
        centre = centred_logit(mean, float(group["val_images"].max()))
        half = (seeds.ci_high - seeds.ci_low) / 2
        rows.append({**dict(zip([*r.keys, "epoch"], key, strict=True)), "n": seeds.n, "val_acc": mean,
                     "val_acc_ci_low": PCT * expit(centre - half), "val_acc_ci_high": PCT * expit(centre + half)})
    return pd.DataFrame(rows, columns=[*r.keys, "epoch", "n", "val_acc", "val_acc_ci_low", "val_acc_ci_high"])


def budget_levels(r: Runs) -> list[str | None]:
    """The budgets a store compares: each level of an `epochs` axis, or one (None)."""
    return r.levels(BUDGET) if BUDGET in r.axes else [None]


def effect_by_epoch(r: Runs, base: dict[str, str], scale: str) -> pd.DataFrame:
    """Each factor's main effect (every level against the reference) at every epoch of every budget,
    from validation accuracy on `scale`, one simultaneous family per epoch, in points at that
    epoch's grand mean."""
    factors = tuple(a for a in r.axes if a != BUDGET)
    data = _validated(r)
    if data.empty or not factors:
        return pd.DataFrame()
    data = data.assign(y=to_scale(data["val_acc"], data["val_images"], scale))
    parts = []
    for budget in budget_levels(r):
        part = data if budget is None else data[data[BUDGET].astype(str) == budget]
        for epoch, rows in part.groupby("epoch", sort=True):
            model = fm.fit(rows, factors, base, scale=scale, response="val acc")
            if isinstance(model, str):
                continue
            labels, weights = analysis.contrasts(model)
            keep = [i for i, lab in enumerate(labels) if lab["kind"] == analysis.MAIN]
            table = analysis.family(model, [labels[i] for i in keep], [weights[i] for i in keep],
                                    [math.nan] * len(keep))
            parts.append(table.assign(budget=budget, epoch=int(epoch), n=len(rows)))
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True).rename(columns={"term": "axis"})
    columns = ["budget", "epoch", "axis", "level", "reference", "n", "points", "points_ci_low", "points_ci_high",
               "verdict"]
    return frame[columns] if BUDGET in r.axes else frame[columns[1:]]


def closes(effects: pd.DataFrame, axis: str, level: str, margin: float = math.nan) -> int | None:
    """The first epoch from which the effect's interval holds 0 (or lies within ±margin) at every
    later epoch; None if it never does by the last epoch."""
    part = effects[(effects["axis"] == axis) & (effects["level"] == level)].sort_values("epoch")
    if part.empty:
        return None
    if math.isfinite(margin):
        ok = (part["points_ci_low"] > -margin) & (part["points_ci_high"] < margin)
    else:
        ok = (part["points_ci_low"] <= 0) & (part["points_ci_high"] >= 0)
    flags = ok.to_numpy()
    if not flags[-1]:
        return None
    first = len(flags) - int(np.argmin(flags[::-1])) if not flags.all() else 0
    return int(part["epoch"].iloc[first])


def plateau(r: Runs, points: float) -> pd.DataFrame:
    """Per cell: the rise (points) of the least-squares line through its seed-mean validation
    accuracy over the epochs of the last fifth of training (at least the last two), over that span,
    with the 95% interval of that rise from the seeds' own points (one line per cell, an intercept per
    seed). The verdict uses the rise itself; the interval says how well the seeds resolve it: where
    validation accuracy jitters from epoch to epoch, a 0.2-point rise is inside the noise: `shown` says
    whether the interval lies under the plateau, at or over it, or neither. `robust_rise` (with its 95%
    interval) is a sensitivity column: the Theil-Sen line through the same seed-mean points (the median of
    the pairwise slopes), for a reader to see how much of a least-squares rise one epoch's dip makes; the
    verdict stays with the least-squares line the study declared."""
    curves = val_curves(r)
    per_seed = dict(iter(_validated(r).groupby(r.keys, observed=True, sort=True)))
    rows = []
    for key, cell in curves.groupby(r.keys, observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        last = int(cell["epoch"].max())
        first = last - max(1, round(LAST_FIFTH * last))
        window = cell[cell["epoch"] >= first]
        rise, low, high = math.nan, math.nan, math.nan
        robust = (math.nan, math.nan, math.nan)
        if len(window) >= 2:
            epochs, acc = window["epoch"].to_numpy(float), window["val_acc"].to_numpy(float)
            rise = float(np.polyfit(epochs, acc, 1)[0]) * (last - first)
            seeds = per_seed[key]
            low, high = (span * (last - first) for span in _slope_interval(seeds[seeds["epoch"] >= first]))
            theil = sps.theilslopes(acc, epochs, alpha=0.95)
            robust = tuple(float(v) * (last - first) for v in (theil.slope, theil.low_slope, theil.high_slope))
        rows.append({**dict(zip(r.keys, key, strict=True)), "last_epoch": last, "window": f"{first}–{last}",
                     "final_val_acc": float(cell["val_acc"].iloc[-1]), "rise": rise, "rise_ci_low": low,
                     "rise_ci_high": high, "plateaued": bool(rise < points) if math.isfinite(rise) else pd.NA,
                     "shown": resolved(low, high, points), "robust_rise": robust[0],
                     "robust_rise_ci_low": robust[1], "robust_rise_ci_high": robust[2]})
    return pd.DataFrame(rows, columns=[*r.keys, "last_epoch", "window", "final_val_acc", "rise", "rise_ci_low",
                                       "rise_ci_high", "plateaued", "shown", "robust_rise", "robust_rise_ci_low",
                                       "robust_rise_ci_high"])


def resolved(low: float, high: float, points: float) -> str:
    """What a rise's interval shows against the plateau: a gain under it (all of the interval under; a
    falling line too), a gain of it or more (all of the interval at or over), or not resolved (it
    straddles the plateau, or there is no interval)."""
    if high < points:
        return under(points)
    if low >= points:
        return rising(points)
    return UNRESOLVED


def under(points: float) -> str:
    return f"gains under {points:g}"


def rising(points: float) -> str:
    return f"gains {points:g} or more"


def _slope_interval(points: pd.DataFrame) -> tuple[float, float]:
    """95% t interval of the common slope of validation accuracy on epoch, an intercept per seed (OLS);
    NaN where no residual degree of freedom is left."""
    data = points.assign(seed=points["seed"].astype(str))
    fit = smf.ols("val_acc ~ epoch + C(seed)" if data["seed"].nunique() > 1 else "val_acc ~ epoch", data).fit()
    if fit.df_resid < 1:
        return math.nan, math.nan
    low, high = fit.conf_int().loc["epoch"]
    return float(low), float(high)


def budgets(r: Runs, table: pd.DataFrame, points: float) -> pd.DataFrame:
    """Per budget of a pilot: the design's cells, how many of them plateaued (and how many the seeds show
    still rising: the whole interval of their rise at or over `points`), the runs still to finish, and
    whether every cell plateaued. A budget with a run still to finish, or a cell without a measured
    curve, has not shown that every cell plateaued: a pilot cannot pick it yet."""
    if BUDGET not in r.axes or table.empty:
        return pd.DataFrame()
    cells = math.prod(len(r.levels(a)) for a in r.axes if a != BUDGET)
    rows = []
    for budget in budget_levels(r):
        part = table[table[BUDGET].astype(str) == budget]
        plateaued = int(part["plateaued"].fillna(False).astype(bool).sum())
        still = int((part["rise_ci_low"] >= points).sum())  # as `resolved` reads it: NaN is not shown
        runs = r.runs[r.runs[BUDGET].astype(str) == budget]
        pending = int((runs["status"] != Status.DONE).sum())
        rows.append({"budget": budget, "cells": cells, "plateaued_cells": plateaued, "rising_cells": still,
                     "runs_pending": pending,
                     "all_plateaued": pending == 0 and plateaued == cells})
    return pd.DataFrame(rows)


def smallest_budget(pilot: pd.DataFrame) -> str | None:
    """The smallest budget (in epochs) at which every cell plateaued; None if none, or while a smaller
    budget still has runs to finish (it might yet be the smallest)."""
    if pilot.empty:
        return None
    for _, row in pilot.sort_values("budget", key=lambda b: b.astype(float)).iterrows():
        if row["all_plateaued"]:
            return row["budget"]
        if row["runs_pending"]:
            return None
    return None
