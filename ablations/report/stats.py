"""Statistics of replicate runs that need no model: summaries, Welch and paired intervals, Holm,
a per-cell accuracy interval that cannot leave [0, 100], and the seeds a difference needs.

Numbers in, numbers out: no plotting, no store, no torch. Every interval is a Student t
interval, because a grid has a handful of seeds per cell and a normal interval would be too
narrow there. One value gives a mean and nothing else (std, CI and p are NaN), which the
report states instead of drawing a zero-width interval. The factorial model is in
`ablations.report.factorial`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower

LEVEL = 0.95  # confidence of every interval; tests are at 1 - LEVEL
ALPHA = 1 - LEVEL
POWER = 0.8
NAN = float("nan")
MAX_SEEDS = 10_000  # "seeds needed" beyond this is printed as more than it


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
    """mean(treatment) - mean(reference), its test and its interval."""

    n: int  # treatment values (pairs, for a paired difference)
    n_ref: int
    mean: float
    mean_ref: float
    diff: float
    ci_low: float
    ci_high: float
    df: float
    p: float

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low

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


def paired(treatment: Sequence[float], reference: Sequence[float], level: float = LEVEL) -> Difference:
    """The paired t interval of mean(treatment - reference) over pairs (one pair per seed)."""
    a, b = np.asarray(treatment, dtype=float), np.asarray(reference, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = summarize(a - b, level)
    if d.n < 2 or d.std == 0:
        return Difference(d.n, d.n, float(a.mean()) if d.n else NAN, float(b.mean()) if d.n else NAN, d.mean,
                          NAN, NAN, NAN, NAN)
    p = float(sps.ttest_rel(a, b).pvalue)
    return Difference(d.n, d.n, float(a.mean()), float(b.mean()), d.mean, d.ci_low, d.ci_high, d.n - 1.0, p)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment; NaN p-values stay NaN and are not in the family.

    It controls the family-wise error rate for any dependence between the tests, which the
    comparisons of one grid certainly have. Written out (it is four lines) rather than taken from
    statsmodels' multipletests, which runs a full garbage collection on every call: 80 ms, and
    the report adjusts a family thousands of times when it leaves each run out in turn. The tests
    check it against multipletests.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, NAN)
    valid = np.flatnonzero(np.isfinite(p))
    if len(valid):
        order = valid[np.argsort(p[valid], kind="stable")]
        m = len(order)
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])  # (m - i) p_(i), kept monotone
        out[order] = np.minimum(stepped, 1.0)
    return out


def cell_interval(acc: Iterable[float], test_images: float, level: float = LEVEL) -> tuple[float, float, str]:
    """An interval for a cell's accuracy (percent) that counts seed spread and test-set noise.

    On the logit scale, so it stays inside (0, 100): each run's accuracy k/m becomes
    logit((k + 0.5) / (m + 1)) (the +0.5 keeps 100% finite). The variance of the mean logit is
    the seed part s^2 / n plus the test set's binomial part 1 / (m p (1 - p)) (delta method; the
    same m test images serve every seed, so averaging seeds does not shrink it). Its degrees of
    freedom are Welch-Satterthwaite's with the binomial part known exactly: (a + b)^2 / (a^2 / (n - 1)).
    Returns (low, high, flag); flag says when the interval must not be read as certainty.
    """
    x = _finite(acc) / 100.0
    n, m = len(x), float(test_images)
    if n == 0:
        return NAN, NAN, "no done run"
    if not np.isfinite(m) or m <= 0:
        return NAN, NAN, "test set size unknown"
    logits = special.logit((x * m + 0.5) / (m + 1))
    centre = float(logits.mean())
    p = float(special.expit(centre))
    binomial = 1.0 / (m * p * (1 - p))
    if n == 1:
        return NAN, NAN, "one seed: seed spread unknown"
    seed = float(logits.var(ddof=1)) / n
    df = (seed + binomial) ** 2 / (seed**2 / (n - 1)) if seed > 0 else math.inf
    half = float(sps.t.ppf((1 + level) / 2, df)) * math.sqrt(seed + binomial)
    low, high = 100 * float(special.expit(centre - half)), 100 * float(special.expit(centre + half))
    flags = []
    if seed == 0:
        flags.append(f"all {n} seeds equal: test-set noise only")
    if high - low < 1e-9:
        flags.append("zero width")
    return low, high, "; ".join(flags)


def seeds_needed(sd: float, delta: float, *, paired_by_seed: bool = False, alpha: float = ALPHA,
                 power: float = POWER) -> float:
    """Seeds per cell for a two-sided t test to detect `delta` points at `power`.

    Unpaired: two independent cells with seed std `sd` (statsmodels TTestIndPower). Paired by
    seed: `sd` is the std of the per-seed differences (statsmodels TTestPower). The smallest
    whole number of seeds (at least 2) whose power reaches the goal; NaN without a spread.
    """
    if not (np.isfinite(sd) and sd > 0 and delta > 0):
        return NAN
    effect = delta / sd
    analysis = TTestPower() if paired_by_seed else TTestIndPower()
    reached = _power_at(analysis, effect, 2, alpha) >= power
    if reached:
        return 2.0
    low, high = 2, 4
    while _power_at(analysis, effect, high, alpha) < power:
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return math.inf
    while high - low > 1:  # power rises with n: bisect to the first n that reaches the goal
        mid = (low + high) // 2
        low, high = (mid, high) if _power_at(analysis, effect, mid, alpha) < power else (low, mid)
    return float(high)


def _power_at(analysis: TTestPower | TTestIndPower, effect: float, n: int, alpha: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(analysis.power(effect_size=effect, nobs=n, alpha=alpha) if isinstance(analysis, TTestPower)
                      else analysis.power(effect_size=effect, nobs1=n, alpha=alpha, ratio=1.0))
    return 1.0 if math.isnan(value) else value  # NaN: an effect so large the noncentral t underflows


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
