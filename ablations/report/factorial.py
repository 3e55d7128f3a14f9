"""The factorial design analysed as one model: OLS of the endpoint on the study's scale (the logit
of the accuracy by default, `scale`) on every axis and all their interactions, with the seed as an
additive block.

    y ~ C(augment) * C(weight_decay) * C(schedule) + C(seed)

The seed block is what the design's pairing buys: runs with the same seed share their
initialization, data order and augmentation draws, so the seed's share of the spread is taken
out of the residual.

One covariance decides every verdict, chosen by the design before any number is seen: the
heteroskedasticity-robust HC3 where every cell has at least HC3_MIN_SEEDS replicates, the
classical one below that. The other is a sensitivity row (`sensitivity`), never a second verdict.

Contrasts are linear combinations of the model's coefficients, built from its own design rows
(a cell's row averaged over the seeds), so main effects, interactions, simple effects and
comparisons with the baseline cell all come from the same fit and the same covariance.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.regression.linear_model import RegressionResultsWrapper
from statsmodels.stats.anova import anova_lm

from ablations.report.stats import ALPHA, holm

RESPONSE = "y"  # the model frame's response: the endpoint on the study's scale
SEED_TERM = "seed (block)"
RESIDUAL = "residual"
ADJUSTMENT = "Bonferroni"  # of the simultaneous intervals; p-values are Holm-adjusted over the same family
# HC3 estimates each cell's variance from that cell's own residuals: with n seeds per cell that is
# n - 1 degrees of freedom (fewer after the seed block), and each residual is inflated by
# 1 / (1 - h)^2 with leverage h >= 1/n. With two or three seeds a cell's variance is a guess
# (a chi-square with 1 or 2 df spans a factor of over 100 between its 5% and 95% points), so a
# robust test there is noisier than the heteroskedasticity it corrects; from six seeds (5 df,
# a factor of 10) it is usable, and six is what a pre-registered study of this suite runs.
HC3_MIN_SEEDS = 6
CLASSICAL, HC3 = "classical", "HC3"


@dataclass(frozen=True)
class Factorial:
    """One fitted model of a store's done runs."""

    classical: RegressionResultsWrapper
    robust: RegressionResultsWrapper  # the same fit, HC3 covariance, t with the residual df
    data: pd.DataFrame  # the model frame: factors as categoricals (reference level first), seed, y
    factors: tuple[str, ...]
    reference: dict[str, str]
    formula: str  # as the page prints it, with the response named
    scale: str = "points"
    replicates: int = 0  # the fewest done runs in any cell

    def levels(self, factor: str) -> list[str]:
        return list(self.data[factor].cat.categories)

    @property
    def seeds(self) -> list:
        return list(self.data["seed"].cat.categories)

    @property
    def covariance(self) -> str:
        """The covariance of every verdict: HC3 where each cell has enough replicates for it."""
        return HC3 if self.replicates >= HC3_MIN_SEEDS else CLASSICAL

    def fit_of(self, covariance: str | None = None) -> RegressionResultsWrapper:
        return self.robust if (covariance or self.covariance) == HC3 else self.classical

    @property
    def centre(self) -> float:
        """The grand mean on the model's scale: the mean of the cell means (equal weight per cell)."""
        return float(self.data.groupby(list(self.factors), observed=True)[RESPONSE].mean().mean())


def fit(data: pd.DataFrame, factors: tuple[str, ...], reference: dict[str, str], *, scale: str = "points",
        response: str = "test acc") -> Factorial | str:
    """The fitted model of `data` (factors, seed and the response `y`), or a sentence saying why
    this store cannot support one."""
    data = data[[*factors, "seed", RESPONSE]].dropna(subset=[RESPONSE]).copy()
    if not factors:
        return "no setting varies: there is no factor to analyse"
    for f in factors:
        levels = data[f].cat.categories if isinstance(data[f].dtype, pd.CategoricalDtype) else sorted(set(data[f]))
        present = [lvl for lvl in levels if (data[f] == lvl).any()]  # the store's order of levels
        if len(present) < 2:
            return f"{f} has fewer than two levels with a done run"
        order = [reference[f], *[lvl for lvl in present if lvl != reference[f]]] if reference[f] in present else present
        data[f] = pd.Categorical(data[f].astype(str), categories=order)
    sizes = data.groupby(list(factors), observed=True).size()
    full = int(np.prod([len(data[f].cat.categories) for f in factors]))
    if len(sizes) < full:
        return (f"{full - len(sizes)} of {full} cells have no done run, so the model with every interaction "
                "cannot be estimated")
    data["seed"] = pd.Categorical(data["seed"])
    terms = " * ".join(f"C({f})" for f in factors)
    block = " + C(seed)" if len(data["seed"].cat.categories) > 1 else ""
    formula = f"{RESPONSE} ~ {terms}{block}"
    classical = smf.ols(formula, data).fit()
    if classical.df_resid < 1:
        return "one run per cell and seed leaves no residual: run two or more seeds per cell"
    with warnings.catch_warnings():  # a run with leverage 1 (two seeds and the block) has no HC3 weight:
        warnings.simplefilter("ignore", RuntimeWarning)  # such a design never uses HC3 for a verdict
        robust = smf.ols(formula, data).fit(cov_type="HC3", use_t=True)
    shown = formula.replace(RESPONSE, f"logit({response})" if scale == "logit" else f"{response} (points)", 1)
    return Factorial(classical, robust, data, tuple(factors), dict(reference), shown, scale, int(sizes.min()))


def term_name(raw: str) -> str:
    """'C(augment):C(schedule)' -> 'augment x schedule'; the seed and the residual get plain names."""
    if raw == "Residual":
        return RESIDUAL
    names = re.findall(r"C\((\w+)\)", raw)
    return SEED_TERM if names == ["seed"] else " x ".join(names)


def anova(model: Factorial) -> pd.DataFrame:
    """Per term: Type II sums of squares, classical F and p, partial eta squared, and the HC3 F and p;
    `significant` by the model's own covariance (`Factorial.covariance`)."""
    classical = anova_lm(model.classical, typ=2)
    robust = _robust_anova(model.classical)
    ss_resid = float(classical.loc["Residual", "sum_sq"])
    rows = []
    for raw, row in classical.iterrows():
        is_resid = raw == "Residual"
        rows.append({
            "term": term_name(raw), "df": row["df"], "sum_sq": row["sum_sq"],
            "F": np.nan if is_resid else row["F"], "p": np.nan if is_resid else row["PR(>F)"],
            "partial_eta_sq": np.nan if is_resid else row["sum_sq"] / (row["sum_sq"] + ss_resid),
            "F_hc3": np.nan if is_resid or robust is None else robust.loc[raw, "F"],
            "p_hc3": np.nan if is_resid or robust is None else robust.loc[raw, "PR(>F)"],
        })
    frame = pd.DataFrame(rows)
    # Effects first (main effects, then interactions by order), the block and the residual last.
    order = frame["term"].map(lambda t: (t in (SEED_TERM, RESIDUAL), t == RESIDUAL, t.count(" x ")))
    frame = frame.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")
    frame["significant"] = frame["p_hc3" if model.covariance == HC3 else "p"] < ALPHA
    return frame.reset_index(drop=True)


def _robust_anova(fit: RegressionResultsWrapper) -> pd.DataFrame | None:
    """The HC3 Type II table, or None where HC3 is undefined: a run with leverage 1 (alone in its cell,
    as in a store whose other seeds are still running) has a residual of 0 divided by 0."""
    if float(np.max(fit.get_influence().hat_matrix_diag)) > 1 - 1e-9:
        return None
    return anova_lm(fit, typ=2, robust="hc3")


def qualifiers(factor: str, interactions: list[tuple[str, ...]]) -> list[str]:
    """The other factors that take part with `factor` in one of `interactions`."""
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


# A contrast is a weight per cell ({(level of each factor, in factor order): weight}); the same
# weights give the model's estimate (`rows`) and a per-seed value (`paired`), so the two agree on
# what they estimate and differ only in how they measure its noise.
Weights = dict[tuple[str, ...], float]


def mean_weights(model: Factorial, fixed: dict[str, str]) -> Weights:
    """Equal weight on every cell matching `fixed`: the least-squares mean of a balanced design."""
    cells = cells_of(model, fixed)
    return {tuple(c[f] for f in model.factors): 1 / len(cells) for c in cells}


def difference_weights(model: Factorial, treat: dict[str, str], ref: dict[str, str]) -> Weights:
    """The mean over cells matching `treat` minus the mean over cells matching `ref`."""
    out = dict(mean_weights(model, treat))
    for cell, w in mean_weights(model, ref).items():
        out[cell] = out.get(cell, 0.0) - w
    return out


def interaction_weights(model: Factorial, levels: dict[str, str]) -> Weights:
    """The interaction contrast of the factors in `levels`, each at its given (non-reference) level
    against its reference: for two factors (a1 b1 - a0 b1) - (a1 b0 - a0 b0), for k factors the
    alternating sum over which of them are at their reference, averaged over the other factors."""
    names = list(levels)
    out: Weights = {}
    for at_level in itertools.product((True, False), repeat=len(names)):
        cell = {f: levels[f] if on else model.reference[f] for f, on in zip(names, at_level, strict=True)}
        sign = (-1) ** (len(names) - sum(at_level))
        for key, w in mean_weights(model, cell).items():
            out[key] = out.get(key, 0.0) + sign * w
    return out


def rows(model: Factorial, weights: list[Weights]) -> np.ndarray:
    """The model's contrast rows (one per weights) from the design rows of every cell."""
    cells = cells_of(model, {})
    design = design_rows(model, cells)
    keys = [tuple(c[f] for f in model.factors) for c in cells]
    matrix = np.array([[w.get(k, 0.0) for k in keys] for w in weights]).reshape(len(weights), len(keys))
    return matrix @ design


def estimate(model: Factorial, contrasts: np.ndarray, *, simultaneous: bool = True,
             covariance: str | None = None) -> pd.DataFrame:
    """Estimate, standard error, t test, and intervals for each contrast row, with the model's
    covariance unless another is asked for (a sensitivity row).

    With `simultaneous`, the rows are one family: intervals at 1 - ALPHA / m (Bonferroni) and
    p Holm-adjusted. Without, a pointwise interval (used for a single level's mean, never a test).
    """
    contrasts = np.atleast_2d(contrasts)
    m = len(contrasts)
    if m == 0:
        return pd.DataFrame(columns=["diff", "se", "df", "p", "diff_ci_low", "diff_ci_high", "p_holm", "family"])
    result = model.fit_of(covariance)
    with warnings.catch_warnings():  # HC3 with a run alone in its cell is NaN (0/0): shown as "–", not warned
        warnings.simplefilter("ignore", RuntimeWarning)
        test = result.t_test(contrasts)
    alpha = ALPHA / m if simultaneous else ALPHA
    ci = np.asarray(test.conf_int(alpha=alpha))
    frame = pd.DataFrame({
        "diff": np.asarray(test.effect).ravel(), "se": np.asarray(test.sd).ravel(),
        "df": float(result.df_resid), "p": np.asarray(test.pvalue).ravel(),
        "diff_ci_low": ci[:, 0], "diff_ci_high": ci[:, 1],
    })
    frame["p_holm"] = holm(frame["p"].to_numpy()) if simultaneous else np.nan
    frame["family"] = m
    return frame
