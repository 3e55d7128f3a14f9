"""ablations.report.stats against scipy, statsmodels and hand computations on small known samples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower

from ablations.report import stats

A = [97.1, 97.6, 96.9, 97.4]
B = [95.2, 96.8, 94.9]


def test_summary_matches_scipy_t_interval() -> None:
    s = stats.summarize(A)
    low, high = sps.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sps.sem(A))
    assert (s.n, s.mean, s.std) == (4, pytest.approx(np.mean(A)), pytest.approx(np.std(A, ddof=1)))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert s.ci_low < s.mean < s.ci_high


def test_summary_of_one_value_has_no_spread_and_nan_is_left_out() -> None:
    one = stats.summarize([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5
    assert all(math.isnan(v) for v in (one.std, one.ci_low, one.ci_high))
    assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)


def test_welch_matches_scipy_test_and_interval() -> None:
    d = stats.welch(A, B)
    ref = sps.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    va, vb = np.var(A, ddof=1) / len(A), np.var(B, ddof=1) / len(B)
    df = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))  # Welch-Satterthwaite
    assert d.diff == pytest.approx(np.mean(A) - np.mean(B))
    assert d.p == pytest.approx(ref.pvalue)
    assert d.df == pytest.approx(df) == pytest.approx(ref.df)
    assert (d.ci_low, d.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert (d.n, d.n_ref) == (4, 3)


def test_welch_needs_two_values_on_each_side() -> None:
    d = stats.welch([97.0], B)
    assert d.diff == pytest.approx(97.0 - np.mean(B))
    assert math.isnan(d.p) and math.isnan(d.ci_low)
    assert math.isnan(stats.welch([1.0, 1.0], [2.0, 2.0]).p)  # no spread at all: no test


def test_holm_by_hand() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept at 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert stats.holm([0.9, 0.8]).tolist() == [1.0, 1.0]  # capped at 1
    out = stats.holm([0.01, float("nan"), 0.04])  # NaN: not a test, not in the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([]).shape == (0,)


def test_holm_is_statsmodels_multipletests() -> None:
    from statsmodels.stats.multitest import multipletests

    # 24 families, sizes 1 to 12 twice: multipletests runs a full garbage collection per call, which
    # takes seconds each late in a long test session
    rng = np.random.default_rng(0)
    for size in [*range(1, 13), *range(1, 13)]:
        p = rng.uniform(0, 0.2, size=size)
        assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_paired_interval_is_scipys_ttest_rel() -> None:
    a, b = [97.1, 97.6, 96.9, 97.4], [96.8, 97.5, 96.3, 97.0]
    d, ref = stats.paired(a, b), sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert (d.diff, d.p, d.df) == (pytest.approx(np.mean(np.subtract(a, b))), pytest.approx(ref.pvalue), 3)
    assert (d.ci_low, d.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # the same numbers unpaired: seeds that move together make the paired interval far narrower
    assert stats.welch(a, b).width > 2 * d.width
    assert math.isnan(stats.paired([1.0, 2.0], [0.0, 1.0]).p)  # constant difference: no spread, no test


def test_cell_interval_stays_inside_0_100_and_flags_ties() -> None:
    low, high, flag = stats.cell_interval([99.9, 99.95, 100.0], 10_000)
    assert 0 < low < high < 100 and flag == ""
    low, high, flag = stats.cell_interval([100.0, 100.0], 10_000)
    assert high < 100 and flag == "all 2 seeds equal: test-set noise only"
    p = special.expit(special.logit(10_000.5 / 10_001))
    assert low == pytest.approx(100 * special.expit(special.logit(p) - 1.959964 / math.sqrt(10_000 * p * (1 - p))))
    assert stats.cell_interval([97.0], 10_000)[2] == "one seed: seed spread unknown"
    # more test images: a narrower interval for the same seeds
    wide, narrow = stats.cell_interval(A, 1_000), stats.cell_interval(A, 100_000)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_seeds_needed_is_the_first_n_with_80_percent_power() -> None:
    for sd, delta in ((0.5, 0.5), (0.3, 1.0), (1.2, 0.5)):
        n = stats.seeds_needed(sd, delta)
        assert n == max(2, math.ceil(TTestIndPower().solve_power(effect_size=delta / sd, alpha=0.05, power=0.8)))
        assert TTestIndPower().power(delta / sd, nobs1=n, alpha=0.05) >= 0.8
        paired = stats.seeds_needed(sd, delta, paired_by_seed=True)
        assert paired == max(2, math.ceil(TTestPower().solve_power(effect_size=delta / sd, alpha=0.05, power=0.8)))
    assert stats.seeds_needed(0.01, 2.0) == 2  # an enormous effect: the smallest sample that has a spread
    assert math.isnan(stats.seeds_needed(0.0, 1.0)) and math.isinf(stats.seeds_needed(50.0, 0.1))


def test_interaction_means_are_the_cell_means_of_each_pair() -> None:
    data = pd.DataFrame({"a": ["x", "x", "y", "y", "y"], "b": ["p", "q", "p", "q", "q"], "v": [1.0, 2, 3, 4, 6]})
    table = stats.interaction_means(data, "a", "b", "v").set_index("a")
    assert table.loc["y", "b=q"] == 5.0 and table.loc["x", "b=p"] == 1.0
    assert stats.pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
