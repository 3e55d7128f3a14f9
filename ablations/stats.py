"""Statistics over replicate runs: summaries with t intervals, Welch tests, Holm, effects.

Numbers in, numbers out: no plotting, no store, no torch. Every interval is a Student t
interval, because a grid has a handful of seeds per cell and a normal interval would be too
narrow there. One value gives a mean and nothing else (std, CI and p are NaN), which the
report states instead of drawing a zero-width interval.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVEL = 0.95  # confidence of every interval; Holm tests at 1 - LEVEL
ALPHA = 1 - LEVEL
NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    """Mean of n values with the sample std (ddof=1) and a t interval for the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Difference:
    """mean(treatment) - mean(reference), Welch's test and its Welch-Satterthwaite interval."""

    n: int  # treatment values
    n_ref: int
    mean: float
    mean_ref: float
    diff: float
    ci_low: float
    ci_high: float
    df: float
    p: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def summarize(values: Iterable[float], level: float = LEVEL) -> Summary:
    """n, mean, std (ddof=1) and the t interval of the mean; NaN values are left out."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, NAN, NAN, NAN)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(treatment: Iterable[float], reference: Iterable[float], level: float = LEVEL) -> Difference:
    """Welch's unequal-variance t test of mean(treatment) - mean(reference), with its interval.

    The interval uses the Welch-Satterthwaite degrees of freedom, the same df the test uses,
    so "the interval excludes 0" and "p < 1 - level" always agree. Fewer than two values on
    either side, or no spread on both, leave p and the interval NaN: there is no test then.
    """
    a, b = _finite(treatment), _finite(reference)
    na, nb = len(a), len(b)
    mean_a = float(a.mean()) if na else NAN
    mean_b = float(b.mean()) if nb else NAN
    diff = mean_a - mean_b
    if na < 2 or nb < 2:
        return Difference(na, nb, mean_a, mean_b, diff, NAN, NAN, NAN, NAN)
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(na, nb, mean_a, mean_b, diff, NAN, NAN, NAN, NAN)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    with warnings.catch_warnings():  # near-identical seeds: scipy warns, the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    half = float(sps.t.ppf((1 + level) / 2, df)) * se
    return Difference(na, nb, mean_a, mean_b, diff, diff - half, diff + half, float(df), p)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment; NaN p-values stay NaN and do not count in the family.

    Sorted ascending, the i-th smallest (0-based) of m becomes min(1, (m - i) p), made
    non-decreasing by a running maximum. It controls the family-wise error rate for any
    dependence between the tests, which the comparisons of one grid certainly have.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, NAN)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def marginal_means(
    data: pd.DataFrame, axis: str, value: str, *, reference: str | None = None, level: float = LEVEL
) -> pd.DataFrame:
    """One row per level of `axis`: the summary of `value` over every run at that level,
    pooled over the other axes, and (with a reference level) Welch's difference to it.

    Pooling over a balanced design compares like with like; the other axes' spread adds to
    the variance, so these tests are conservative next to a full factorial model.
    """
    rows = []
    groups = {lvl: g[value].to_numpy() for lvl, g in data.groupby(axis, observed=True, sort=True)}
    ref_values = groups.get(reference) if reference is not None else None
    for lvl, values in groups.items():
        row = {axis: lvl, **summarize(values, level).as_dict()}
        if ref_values is not None and lvl != reference:
            d = welch(values, ref_values, level)
            row.update(diff=d.diff, diff_ci_low=d.ci_low, diff_ci_high=d.ci_high, df=d.df, p=d.p)
        else:
            row.update(diff=NAN, diff_ci_low=NAN, diff_ci_high=NAN, df=NAN, p=NAN)
        rows.append(row)
    columns = [axis, "n", "mean", "std", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high", "df", "p"]
    return pd.DataFrame(rows, columns=columns)


def interaction_means(data: pd.DataFrame, row: str, col: str, value: str) -> pd.DataFrame:
    """Mean of `value` for every (row level, column level), pooled over the other axes.

    Parallel rows mean no interaction: the effect of `col` is the same at every `row` level.
    """
    table = data.pivot_table(index=row, columns=col, values=value, aggfunc="mean", observed=True, sort=True)
    table.columns = [f"{col}={c}" for c in table.columns]
    return table.reset_index()


def pairs(axes: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of axes, in axis order."""
    return list(itertools.combinations(axes, 2))
