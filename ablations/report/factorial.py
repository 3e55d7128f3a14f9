"""The factorial design analysed as one model: OLS of final test accuracy (points) on every axis
and all their interactions, with the seed as an additive block.

    acc ~ C(augment) * C(weight_decay) * C(schedule) + C(seed)

The seed block is what the design's pairing buys: runs with the same seed share their
initialization, data order and augmentation draws, so the seed's share of the spread is taken
out of the residual. Seed variance differs strongly between cells (augmented cells spread
more), so beside the classical Type II F test every term gets the heteroskedasticity-robust one
(HC3), and every contrast uses the HC3 covariance with the residual degrees of freedom.
Decisions (which interactions hold) use the robust p-value.

Contrasts are linear combinations of the model's coefficients, built from its own design rows
(a cell's row averaged over the seeds), so simple effects, main effects and comparisons with the
baseline cell all come from the same fit and the same covariance.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.regression.linear_model import RegressionResultsWrapper
from statsmodels.stats.anova import anova_lm

from ablations.report.stats import ALPHA, holm

RESPONSE = "test_acc"
SEED_TERM = "seed (block)"
RESIDUAL = "residual"
ADJUSTMENT = "Bonferroni"  # of the simultaneous intervals; p-values are Holm-adjusted over the same family


@dataclass(frozen=True)
class Factorial:
    """One fitted model of a store's done runs."""

    classical: RegressionResultsWrapper
    robust: RegressionResultsWrapper  # the same fit, HC3 covariance, t with the residual df
    data: pd.DataFrame  # the model frame: factors as categoricals (reference level first), seed, response
    factors: tuple[str, ...]
    reference: dict[str, str]
    formula: str

    def levels(self, factor: str) -> list[str]:
        return list(self.data[factor].cat.categories)

    @property
    def seeds(self) -> list:
        return list(self.data["seed"].cat.categories)


def fit(done: pd.DataFrame, factors: tuple[str, ...], reference: dict[str, str]) -> Factorial | str:
    """The fitted model, or a sentence saying why this store cannot support one."""
    data = done[[*factors, "seed", RESPONSE]].dropna(subset=[RESPONSE]).copy()
    if not factors:
        return "no setting varies: there is no factor to analyse"
    for f in factors:
        present = [lvl for lvl in done[f].cat.categories if (data[f] == lvl).any()]
        if len(present) < 2:
            return f"{f} has fewer than two levels with a done run"
        order = [reference[f], *[lvl for lvl in present if lvl != reference[f]]] if reference[f] in present else present
        data[f] = pd.Categorical(data[f].astype(str), categories=order)
    cells = data.groupby(list(factors), observed=True).ngroups
    full = int(np.prod([len(data[f].cat.categories) for f in factors]))
    if cells < full:
        return (f"{full - cells} of {full} cells have no done run, so the model with every interaction "
                "cannot be estimated")
    data["seed"] = pd.Categorical(data["seed"])
    terms = " * ".join(f"C({f})" for f in factors)
    block = " + C(seed)" if len(data["seed"].cat.categories) > 1 else ""
    formula = f"{RESPONSE} ~ {terms}{block}"
    classical = smf.ols(formula, data).fit()
    if classical.df_resid < 1:
        return "one run per cell and seed leaves no residual: run two or more seeds per cell"
    robust = smf.ols(formula, data).fit(cov_type="HC3", use_t=True)
    return Factorial(classical, robust, data, tuple(factors), dict(reference), formula)


def term_name(raw: str) -> str:
    """'C(augment):C(schedule)' -> 'augment x schedule'; the seed and the residual get plain names."""
    if raw == "Residual":
        return RESIDUAL
    names = re.findall(r"C\((\w+)\)", raw)
    return SEED_TERM if names == ["seed"] else " x ".join(names)


def anova(model: Factorial) -> pd.DataFrame:
    """Per term: Type II sums of squares, classical F and p, partial eta squared, and the HC3 F and p."""
    classical = anova_lm(model.classical, typ=2)
    robust = anova_lm(model.classical, typ=2, robust="hc3")
    ss_resid = float(classical.loc["Residual", "sum_sq"])
    rows = []
    for raw, row in classical.iterrows():
        is_resid = raw == "Residual"
        rows.append({
            "term": term_name(raw), "df": row["df"], "sum_sq": row["sum_sq"],
            "F": np.nan if is_resid else row["F"], "p": np.nan if is_resid else row["PR(>F)"],
            "partial_eta_sq": np.nan if is_resid else row["sum_sq"] / (row["sum_sq"] + ss_resid),
            "F_hc3": np.nan if is_resid else robust.loc[raw, "F"],
            "p_hc3": np.nan if is_resid else robust.loc[raw, "PR(>F)"],
        })
    frame = pd.DataFrame(rows)
    # Effects first (main effects, then interactions by order), the block and the residual last.
    order = frame["term"].map(lambda t: (t in (SEED_TERM, RESIDUAL), t == RESIDUAL, t.count(" x ")))
    frame = frame.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")
    frame["significant"] = frame["p_hc3"] < ALPHA
    return frame.reset_index(drop=True)


def holding_interactions(table: pd.DataFrame) -> list[tuple[str, ...]]:
    """The interactions whose robust test rejects at ALPHA, as tuples of factors."""
    rows = table[table["term"].str.contains(" x ") & table["significant"]]
    return [tuple(t.split(" x ")) for t in rows["term"]]


def qualifiers(factor: str, interactions: list[tuple[str, ...]]) -> list[str]:
    """The other factors that take part with `factor` in an interaction that holds."""
    return sorted({f for term in interactions if factor in term for f in term if f != factor})


# ---- contrasts ---------------------------------------------------------------------------
def design_rows(model: Factorial, cells: list[dict[str, str]]) -> np.ndarray:
    """One design row per cell ({factor: level}), averaged over the seeds."""
    seeds = model.seeds
    grid = pd.DataFrame([{**cell, "seed": s} for cell in cells for s in seeds])
    for f in model.factors:
        grid[f] = pd.Categorical(grid[f].astype(str), categories=model.levels(f))
    grid["seed"] = pd.Categorical(grid["seed"], categories=seeds)
    grid[RESPONSE] = 0.0
    spec = model.classical.model.data.model_spec
    if hasattr(spec, "get_model_matrix"):  # formulaic
        matrix = np.asarray(spec.get_model_matrix(grid), dtype=float)
    else:  # patsy
        from patsy import build_design_matrices

        matrix = np.asarray(build_design_matrices([spec], grid)[0], dtype=float)
    return matrix.reshape(len(cells), len(seeds), -1).mean(axis=1)


def cells_of(model: Factorial, fixed: dict[str, str]) -> list[dict[str, str]]:
    """Every cell that agrees with `fixed`, the free factors taking each of their levels."""
    free = [f for f in model.factors if f not in fixed]
    return [{**fixed, **dict(zip(free, combo, strict=True))}
            for combo in itertools.product(*(model.levels(f) for f in free))]


def difference_row(model: Factorial, treat: dict[str, str], ref: dict[str, str]) -> np.ndarray:
    """Contrast of the mean over cells matching `treat` minus that over cells matching `ref`
    (equal weight per cell: the least-squares means of a balanced design)."""
    return design_rows(model, cells_of(model, treat)).mean(axis=0) - design_rows(model, cells_of(model, ref)).mean(
        axis=0)


def estimate(model: Factorial, contrasts: np.ndarray, *, simultaneous: bool = True) -> pd.DataFrame:
    """Estimate, HC3 standard error, t test, and intervals for each contrast row.

    With `simultaneous`, the rows are one family: intervals at 1 - ALPHA / m (Bonferroni) and
    p Holm-adjusted. Without, a pointwise interval (used for a single level's mean, never a test).
    """
    contrasts = np.atleast_2d(contrasts)
    m = len(contrasts)
    if m == 0:
        return pd.DataFrame(columns=["diff", "se", "df", "p", "diff_ci_low", "diff_ci_high", "p_holm", "family"])
    test = model.robust.t_test(contrasts)
    alpha = ALPHA / m if simultaneous else ALPHA
    ci = np.asarray(test.conf_int(alpha=alpha))
    frame = pd.DataFrame({
        "diff": np.asarray(test.effect).ravel(), "se": np.asarray(test.sd).ravel(),
        "df": float(model.robust.df_resid), "p": np.asarray(test.pvalue).ravel(),
        "diff_ci_low": ci[:, 0], "diff_ci_high": ci[:, 1],
    })
    frame["p_holm"] = holm(frame["p"].to_numpy()) if simultaneous else np.nan
    frame["family"] = m
    return frame
