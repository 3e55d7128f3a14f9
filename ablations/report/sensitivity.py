"""Every other reasonable test of the same effects, as rows beside the one verdict the design
declares: the other scale, the other covariance, the seed as the unit, leaving each run out, and, where
the runs come from more than one machine, the runs of one machine alone.

None of these is a second verdict. Each row says whether it reaches the same verdict, and where its
interval and the primary one differ by more than chance would make them (`AGREE`), a note says why
they may differ. The reading names every effect whose verdict depends on the choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablations.report import analysis
from ablations.report import factorial as fm
from ablations.report.paired import seed_unit
from ablations.report.runs import cell_name

KEYS = ["kind", "term", "level", "reference"]
COLUMNS = [*KEYS, "method", "points", "points_ci_low", "points_ci_high", "verdict", "agrees", "note"]
# Two intervals of one effect agree when each contains the other's estimate and their widths are within
# a factor of two of each other: two honest intervals of the same data can differ that much (another
# df, another variance estimate), and more than that has a reason worth a sentence.
AGREE = 2.0
WHY = {
    "scale": "the two scales weight the cells differently: on points a cell near 100% has little room to move and "
             "spreads less, so differences between near-perfect cells count less on points than on the logit scale",
    "covariance": "HC3 estimates each cell's own variance from its few seeds; the classical test pools one variance "
                  "over all cells",
    "seed": "paired by seed, the noise is estimated from this contrast's per-seed values alone (df = seeds - 1), "
            "while the model pools every cell's residual (df = residual)",
    "machine": "one machine's runs are fewer than all of them, so its interval is wider; where a cell's runs came "
               "from one machine more than another, the machines may also differ",
}


def sensitivity(primary: fm.Factorial, other_scale: fm.Factorial | None, effects: pd.DataFrame,
                margins: dict[str, float], machines: pd.Series | None = None) -> pd.DataFrame:
    """One row per effect and method; the primary row first for each effect. `machines` names the machine
    of each done run (indexed like the model's data) where they differ."""
    if effects.empty:
        return pd.DataFrame(columns=COLUMNS)
    labels, weights = analysis.contrasts(primary)
    base = effects[KEYS + ["points", "points_ci_low", "points_ci_high", "verdict"]].assign(
        method=f"primary: {primary.scale}, {primary.covariance}", agrees=True, note="")
    parts = [base]
    if other_scale is not None:
        parts.append(_compare(effects, analysis.effects(other_scale, margins, primary.covariance),
                              f"{other_scale.scale} scale", WHY["scale"]))
    other_cov = fm.CLASSICAL if primary.covariance == fm.HC3 else fm.HC3
    note = WHY["covariance"] + ("" if other_cov == fm.CLASSICAL else
                                f" (fewer than {fm.HC3_MIN_SEEDS} seeds per cell: too few for a robust test)")
    parts.append(_compare(effects, analysis.effects(primary, margins, other_cov), f"{other_cov} covariance", note))
    parts.append(_compare(effects, _seed_unit(primary, labels, weights, margins), "seed as the unit", WHY["seed"]))
    parts.append(_leave_one_out(primary, effects, margins))
    if machines is not None:
        parts.append(_one_machine(primary, effects, margins, machines))
    frame = pd.concat(parts, ignore_index=True)
    order = {tuple(r): i for i, r in enumerate(effects[KEYS].itertuples(index=False, name=None))}
    frame["_order"] = [order[tuple(r)] for r in frame[KEYS].itertuples(index=False, name=None)]
    return frame.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)[COLUMNS]


def _seed_unit(model: fm.Factorial, labels: list[dict], weights: list[fm.Weights],
               margins: dict[str, float]) -> pd.DataFrame:
    parts = []
    for kind in (analysis.MAIN, analysis.INTERACTION):  # the same families as the verdicts
        keep = [i for i, lab in enumerate(labels) if lab["kind"] == kind]
        if not keep:
            continue
        est = seed_unit(model, [weights[i] for i in keep])
        bounds = [analysis.margin_of(labels[i]["term"], margins) for i in keep]
        parts.append(pd.concat([pd.DataFrame([labels[i] for i in keep]),
                                analysis.judge(est, bounds, model.centre, model.scale)], axis=1))
    return pd.concat(parts, ignore_index=True)


def _compare(primary: pd.DataFrame, other: pd.DataFrame, method: str, why: str) -> pd.DataFrame:
    merged = primary[KEYS + ["points", "points_ci_low", "points_ci_high", "verdict"]].merge(
        other[KEYS + ["points", "points_ci_low", "points_ci_high", "verdict"]], on=KEYS, suffixes=("_p", ""))
    merged["agrees"] = merged["verdict"] == merged["verdict_p"]
    merged["note"] = [("" if intervals_agree(r.points_p, r.points_ci_low_p, r.points_ci_high_p, r.points,
                                             r.points_ci_low, r.points_ci_high) else why)
                      for r in merged.itertuples(index=False)]
    return merged.assign(method=method)[COLUMNS]


def intervals_agree(a: float, a_low: float, a_high: float, b: float, b_low: float, b_high: float) -> bool:
    """Each interval holds the other's estimate and neither is more than AGREE times as wide."""
    if not np.all(np.isfinite([a, a_low, a_high, b, b_low, b_high])):
        return False
    wa, wb = a_high - a_low, b_high - b_low
    return a_low <= b <= a_high and b_low <= a <= b_high and max(wa, wb) <= AGREE * max(min(wa, wb), 1e-12)


def _leave_one_out(model: fm.Factorial, effects: pd.DataFrame, margins: dict[str, float]) -> pd.DataFrame:
    """Refit without each run in turn (same scale, same covariance): the range of each estimate, and
    the runs whose absence flips its verdict."""
    estimates: dict[tuple, list[float]] = {tuple(r): [] for r in effects[KEYS].itertuples(index=False, name=None)}
    flips: dict[tuple, list[str]] = {k: [] for k in estimates}  # "<new verdict> without <run>"
    primary = {tuple(r[:4]): r[4] for r in effects[[*KEYS, "verdict"]].itertuples(index=False, name=None)}
    data = model.data.assign(y=model.data[fm.RESPONSE])
    for i in data.index:
        refit = fm.fit(data.drop(index=i), model.factors, model.reference, scale=model.scale)
        if isinstance(refit, str):
            continue
        table = analysis.effects(refit, margins, model.covariance)
        run = cell_name({f: data.at[i, f] for f in model.factors}) + f", seed {data.at[i, 'seed']}"
        for r in table[[*KEYS, "points", "verdict"]].itertuples(index=False, name=None):
            estimates[tuple(r[:4])].append(r[4])
            if r[5] != primary[tuple(r[:4])]:
                flips[tuple(r[:4])].append(f"{r[5]} without {run}")
    rows = []
    for key, values in estimates.items():
        found = flips[key]
        verdict = primary[key] if not found else f"{primary[key]}, but {_runs(found)}"
        rows.append({**dict(zip(KEYS, key, strict=True)), "method": f"leave one run out ({len(values)} refits)",
                     "points": float(np.median(values)) if values else np.nan,
                     "points_ci_low": min(values, default=np.nan), "points_ci_high": max(values, default=np.nan),
                     "verdict": verdict, "agrees": not found,
                     "note": "the interval columns hold the range of the estimate over the refits"})
    return pd.DataFrame(rows, columns=COLUMNS)


def _one_machine(model: fm.Factorial, effects: pd.DataFrame, margins: dict[str, float],
                 machines: pd.Series) -> pd.DataFrame:
    """The same analysis of the runs of the machine that ran most of them, alone: mixing machines
    decided nothing where its verdicts are the primary ones. No row where they cannot fit the model."""
    names = machines.reindex(model.data.index)
    counts = names.value_counts()
    if len(counts) < 2:
        return pd.DataFrame(columns=COLUMNS)
    name, n = counts.index[0], int(counts.iloc[0])
    data = model.data[names == name].copy()
    data["seed"] = data["seed"].astype(str)  # a seed none of its runs trained gets no column
    refit = fm.fit(data, model.factors, model.reference, scale=model.scale)
    if isinstance(refit, str):
        return pd.DataFrame(columns=COLUMNS)
    return _compare(effects, analysis.effects(refit, margins, refit.covariance),
                    f"one machine alone ({n} of {len(names)} runs: {name})", WHY["machine"])


def _runs(names: list[str]) -> str:
    return "; ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
