"""ablations.stats against scipy and hand computations on small known samples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ablations import stats

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


def test_marginal_means_pool_other_axes_and_compare_to_reference() -> None:
    data = pd.DataFrame({"aug": ["none"] * 4 + ["seed"] * 4, "wd": ["0", "0", "1", "1"] * 2,
                         "acc": [98.0, 98.4, 97.9, 98.3, 95.0, 96.1, 95.5, 94.8]})
    m = stats.marginal_means(data, "aug", "acc", reference="none").set_index("aug")
    seed, none = data.acc[4:], data.acc[:4]
    assert m.loc["seed", "mean"] == pytest.approx(seed.mean())
    assert m.loc["seed", "ci_high"] == pytest.approx(sps.t.interval(0.95, 3, seed.mean(), sps.sem(seed))[1])
    assert m.loc["seed", "p"] == pytest.approx(sps.ttest_ind(seed, none, equal_var=False).pvalue)
    assert m.loc["seed", "diff"] == pytest.approx(seed.mean() - none.mean())
    assert math.isnan(m.loc["none", "diff"])


def test_interaction_means_are_the_cell_means_of_each_pair() -> None:
    data = pd.DataFrame({"a": ["x", "x", "y", "y", "y"], "b": ["p", "q", "p", "q", "q"], "v": [1.0, 2, 3, 4, 6]})
    table = stats.interaction_means(data, "a", "b", "v").set_index("a")
    assert table.loc["y", "b=q"] == 5.0 and table.loc["x", "b=p"] == 1.0
    assert stats.pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
