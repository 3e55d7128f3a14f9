"""The tables a factorial design calls for, from one model (`factorial.fit`) of the done runs:
ANOVA, main effects (flagged where an interaction qualifies them), simple effects where an
interaction holds, comparisons with the baseline cell, what the seed pairing buys, and the seeds
a difference needs.

Every family of comparisons gets simultaneous intervals (Bonferroni over the rows of its table)
and Holm-adjusted p-values over the same rows; the page says so beside each table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablations.report import factorial as fm
from ablations.report import stats
from ablations.report.runs import cell_name

DELTAS = (0.5, 1.0, 2.0)  # points of test accuracy a study might want to detect
SEEDS_COLUMNS = {d: f"seeds_for_{d:g}".replace(".", "_") for d in DELTAS}
CONTRAST_COLUMNS = ["diff", "diff_ci_low", "diff_ci_high", "se", "df", "p", "p_holm", "significant", "family"]


def _contrasts(model: fm.Factorial, rows: list[dict], vectors: list[np.ndarray]) -> pd.DataFrame:
    """Rows of labels joined with their estimated contrasts, one simultaneous family."""
    if not rows:
        return pd.DataFrame(columns=CONTRAST_COLUMNS)
    est = fm.estimate(model, np.array(vectors))
    est["significant"] = est["p_holm"] < stats.ALPHA
    return pd.concat([pd.DataFrame(rows), est[CONTRAST_COLUMNS]], axis=1)


def main_effects(model: fm.Factorial, interactions: list[tuple[str, ...]]) -> pd.DataFrame:
    """Per factor and level: its least-squares mean (equal weight over the other factors' cells,
    pointwise HC3 interval) and its difference to the reference level (simultaneous family).
    `qualified_by` names the factors it interacts with: then the average hides a dependence."""
    label_rows, vectors, means = [], [], []
    for f in model.factors:
        ref = model.reference[f]
        qualified = ", ".join(fm.qualifiers(f, interactions))
        for level in model.levels(f):
            means.append(fm.design_rows(model, fm.cells_of(model, {f: level})).mean(axis=0))
            if level == ref:
                continue
            label_rows.append({"axis": f, "level": level, "reference": ref, "qualified_by": qualified})
            vectors.append(fm.difference_row(model, {f: level}, {f: ref}))
    frame = _contrasts(model, label_rows, vectors)
    level_means = fm.estimate(model, np.array(means), simultaneous=False)
    keys = [(f, lvl) for f in model.factors for lvl in model.levels(f)]
    mean_of = {k: (row.diff, row.diff_ci_low, row.diff_ci_high) for k, row in zip(keys, level_means.itertuples(),
                                                                                  strict=True)}
    n_of = {(f, lvl): int((model.data[f] == lvl).sum()) for f, lvl in keys}
    ref_rows = pd.DataFrame([{"axis": f, "level": model.reference[f], "reference": model.reference[f],
                              "qualified_by": ", ".join(fm.qualifiers(f, interactions))} for f in model.factors])
    frame = pd.concat([ref_rows, frame], ignore_index=True) if len(frame) else ref_rows
    frame["_order"] = [keys.index((a, lvl)) for a, lvl in zip(frame["axis"], frame["level"], strict=True)]
    frame = frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    frame.insert(3, "n", [n_of[(a, lvl)] for a, lvl in zip(frame["axis"], frame["level"], strict=True)])
    for i, name in enumerate(("test_acc", "test_acc_ci_low", "test_acc_ci_high")):
        frame.insert(4 + i, name, [mean_of[(a, lvl)][i] for a, lvl in zip(frame["axis"], frame["level"], strict=True)])
    if "significant" in frame:
        frame["significant"] = frame["significant"].astype("boolean")
    return frame


def simple_effects(model: fm.Factorial, interactions: list[tuple[str, ...]]) -> pd.DataFrame:
    """For each factor in an interaction that holds: its effect (each level against the reference)
    within every combination of the factors it interacts with, averaged over the rest."""
    label_rows, vectors = [], []
    for f in model.factors:
        others = fm.qualifiers(f, interactions)
        if not others:
            continue
        ref = model.reference[f]
        for combo in _combinations(model, others):
            for level in model.levels(f)[1:]:
                label_rows.append({"axis": f, "level": level, "reference": ref, "within": cell_name(combo)})
                vectors.append(fm.difference_row(model, {f: level, **combo}, {f: ref, **combo}))
    return _contrasts(model, label_rows, vectors)


def _combinations(model: fm.Factorial, factors: list[str]) -> list[dict[str, str]]:
    sub = fm.Factorial(model.classical, model.robust, model.data, tuple(factors), model.reference, model.formula)
    return fm.cells_of(sub, {})


def vs_baseline(model: fm.Factorial, cells: pd.DataFrame, keys: list[str], base: dict[str, str]) -> pd.DataFrame:
    """Every other cell against the baseline cell, from the model (seed block, HC3)."""
    label_rows, vectors = [], []
    for row in cells[cells["n"] > 0].itertuples(index=False):
        cell = {k: str(getattr(row, k)) for k in keys}
        if cell == base:
            continue
        label_rows.append({**cell, "n": row.n, "test_acc": row.test_acc})
        vectors.append(fm.difference_row(model, cell, base))
    return _contrasts(model, label_rows, vectors)


def pairing(done: pd.DataFrame, factors: tuple[str, ...]) -> pd.DataFrame:
    """For each two-level factor: its difference per seed (averaged over the other factors' cells),
    with the paired-by-seed t interval beside the unpaired Welch interval of the same numbers.

    Only seeds with a done run in every cell count, so both intervals use the same runs.
    """
    rows = []
    for f in factors:
        levels = [lvl for lvl in done[f].cat.categories if (done[f] == lvl).any()]
        if len(levels) != 2:
            continue
        ref, level = levels
        per_cell = done.pivot_table(index="seed", columns=list(factors), values="test_acc", aggfunc="mean",
                                    observed=True)
        complete = per_cell.dropna()
        treat = complete.xs(level, axis=1, level=f).mean(axis=1) if len(factors) > 1 else complete[level]
        refs = complete.xs(ref, axis=1, level=f).mean(axis=1) if len(factors) > 1 else complete[ref]
        pair = stats.paired(treat.to_numpy(), refs.to_numpy())
        unpaired = stats.welch(treat.to_numpy(), refs.to_numpy())
        corr = float(np.corrcoef(treat, refs)[0, 1]) if len(treat) > 2 and treat.std() > 0 and refs.std() > 0 \
            else math.nan
        rows.append({"axis": f, "level": level, "reference": ref, "seeds": pair.n, "diff": pair.diff,
                     "diff_ci_low": pair.ci_low, "diff_ci_high": pair.ci_high, "paired_width": pair.width,
                     "unpaired_low": unpaired.ci_low, "unpaired_high": unpaired.ci_high,
                     "unpaired_width": unpaired.width, "width_ratio": unpaired.width / pair.width,
                     "seed_correlation": corr})
    columns = ["axis", "level", "reference", "seeds", "diff", "diff_ci_low", "diff_ci_high", "paired_width",
               "unpaired_low", "unpaired_high", "unpaired_width", "width_ratio", "seed_correlation"]
    return pd.DataFrame(rows, columns=columns)


def seeds_needed(cells: pd.DataFrame, keys: list[str], model: fm.Factorial | None) -> pd.DataFrame:
    """Seeds per cell to detect 0.5, 1 and 2 points between two cells at 80% power, alpha 0.05,
    from the spread observed: pooled within-cell std and the largest cell's (unpaired t test),
    and the std of a seed-paired difference from the blocked model (paired t test)."""
    spread = cells[(cells["n"] >= 2) & cells["test_acc_std"].notna()]
    rows = []
    if len(spread):
        pooled = math.sqrt(float(np.average(spread["test_acc_std"] ** 2, weights=spread["n"] - 1)))
        rows.append({"spread": "pooled within-cell seed std", "design": "two cells, unpaired", "std": pooled,
                     "paired": False})
        worst = spread.loc[spread["test_acc_std"].idxmax()]
        rows.append({"spread": f"largest cell seed std ({cell_name({k: worst[k] for k in keys})})",
                     "design": "two cells, unpaired", "std": float(worst["test_acc_std"]), "paired": False})
    if model is not None and "C(seed)" in model.formula:
        diff_std = math.sqrt(2 * float(model.classical.mse_resid))  # two runs of one seed: each has the residual
        rows.append({"spread": "seed-paired difference (residual of the blocked model x sqrt 2)",
                     "design": "two cells, paired by seed", "std": diff_std, "paired": True})
    for row in rows:
        for delta, column in SEEDS_COLUMNS.items():
            row[column] = stats.seeds_needed(row["std"], delta, paired_by_seed=row["paired"])
    columns = ["spread", "design", "std", *SEEDS_COLUMNS.values()]
    return pd.DataFrame(rows, columns=[*columns, "paired"])[columns]
