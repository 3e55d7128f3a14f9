"""The factorial analysis of a real store against direct statsmodels/scipy computations on the
values written: the ANOVA (classical and HC3), simple effects, comparisons with the baseline,
pairing by seed, seeds needed, and the per-cell interval."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import special
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from test_report_store import build_store, frame

from ablations.report.runs import load_runs
from ablations.report.study import analyse
from ablations.store.sqlite import Store, store_path

AXES = ["augment", "weight_decay", "schedule"]
BASE = {"augment": "none", "weight_decay": "0", "schedule": "constant"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    results = tmp_path_factory.mktemp("analysis")
    written = build_store(results)
    with Store.open_existing(store_path(results)) as store:
        runs = load_runs(store)
    data = frame(written)
    for axis in AXES:  # the reference level first: the model's treatment coding
        data[axis] = pd.Categorical(data[axis], categories=[BASE[axis], *sorted(set(data[axis]) - {BASE[axis]})])
    return analyse(runs, None, 0.98), data


def cell_means_fit(data: pd.DataFrame):
    """The same model in another parametrization: one mean per cell plus the seed block. HC3 does
    not depend on the parametrization, so contrasts must agree with the report's exactly."""
    cells = data.assign(cell=data[AXES].astype(str).agg("|".join, axis=1))
    return smf.ols("acc ~ 0 + C(cell) + C(seed)", cells).fit(cov_type="HC3", use_t=True)


def contrast(fit, plus: list[str], minus: list[str]) -> np.ndarray:
    names = fit.model.exog_names
    vec = np.zeros(len(names))
    for cells, sign in ((plus, 1.0), (minus, -1.0)):
        for c in cells:
            vec[names.index(f"C(cell)[{c}]")] += sign / len(cells)
    return vec


def test_anova_is_statsmodels_type2_with_hc3_beside_it(study) -> None:
    s, data = study
    fit = smf.ols("acc ~ C(augment) * C(weight_decay) * C(schedule) + C(seed)", data).fit()
    classical, robust = anova_lm(fit, typ=2), anova_lm(fit, typ=2, robust="hc3")
    table = s.tables["anova"].set_index("term")
    resid = classical.loc["Residual", "sum_sq"]
    for raw, term in (("C(augment)", "augment"), ("C(augment):C(schedule)", "augment x schedule"),
                      ("C(augment):C(weight_decay):C(schedule)", "augment x weight_decay x schedule"),
                      ("C(seed)", "seed (block)")):
        row = table.loc[term]
        assert row["F"] == pytest.approx(classical.loc[raw, "F"]) and row["p"] == pytest.approx(
            classical.loc[raw, "PR(>F)"])
        assert row["F_hc3"] == pytest.approx(robust.loc[raw, "F"]) and row["p_hc3"] == pytest.approx(
            robust.loc[raw, "PR(>F)"])
        ss = classical.loc[raw, "sum_sq"]
        assert row["partial_eta_sq"] == pytest.approx(ss / (ss + resid))
    assert table.loc["residual", "df"] == fit.df_resid == 24 - 8 - 2
    # The augmented cells spread 4x more: the robust test differs from the classical one.
    assert table.loc["augment", "F_hc3"] != pytest.approx(table.loc["augment", "F"], rel=0.05)
    # Written with an augment x schedule interaction and none with weight decay: the model finds exactly that.
    assert s.interactions == [("augment", "schedule")]


def test_simple_effects_within_each_level_with_bonferroni_intervals(study) -> None:
    s, data = study
    fit = cell_means_fit(data)
    simple = s.tables["simple_effects"]
    assert sorted(set(simple["axis"])) == ["augment", "schedule"]  # weight decay takes part in no interaction
    assert len(simple) == 4 and (simple["family"] == 4).all()
    vectors = []
    for row in simple.itertuples():
        within = dict(part.split("=") for part in row.within.split(", "))
        other = "schedule" if row.axis == "augment" else "augment"
        def cells(level, axis=row.axis, other=other, within=within, wds=("0", "0.001")):
            return ["|".join({axis: level, other: within[other], "weight_decay": w}[a] for a in AXES) for w in wds]

        vectors.append(contrast(fit, cells(row.level), cells(row.reference)))
    test = fit.t_test(np.array(vectors))
    ci = np.asarray(test.conf_int(alpha=0.05 / 4))
    assert simple["diff"].to_numpy() == pytest.approx(np.ravel(test.effect))
    assert simple["se"].to_numpy() == pytest.approx(np.ravel(test.sd))
    assert simple["diff_ci_low"].to_numpy() == pytest.approx(ci[:, 0])
    assert simple["diff_ci_high"].to_numpy() == pytest.approx(ci[:, 1])
    assert simple["p_holm"].to_numpy() == pytest.approx(multipletests(np.ravel(test.pvalue), method="holm")[1])
    # Augmentation costs more under the constant schedule (3 points) than under step (about 1.5).
    aug = simple[simple.axis == "augment"].set_index("within")["diff"]
    assert aug["schedule=constant"] < aug["schedule=step"] < 0


def test_main_effects_are_flagged_when_an_interaction_qualifies_them(study) -> None:
    s, data = study
    effects = s.tables["main_effects"].set_index(["axis", "level"])
    assert effects.loc[("augment", "notebook"), "qualified_by"] == "schedule"
    assert effects.loc[("schedule", "step"), "qualified_by"] == "augment"
    assert effects.loc[("weight_decay", "0.001"), "qualified_by"] == ""
    fit = cell_means_fit(data)
    every = ["|".join(c) for c in data[AXES].astype(str).drop_duplicates().itertuples(index=False)]
    treat = [c for c in every if c.split("|")[0] == "notebook"]
    ref = [c for c in every if c.split("|")[0] == "none"]
    test = fit.t_test(contrast(fit, treat, ref))
    row = effects.loc[("augment", "notebook")]
    assert row["diff"] == pytest.approx(float(test.effect[0])) and row["se"] == pytest.approx(float(test.sd[0][0]))
    assert row["diff_ci_low"] == pytest.approx(np.asarray(test.conf_int(alpha=0.05 / 3))[0, 0])


def test_comparisons_with_the_baseline_cell_come_from_the_model(study) -> None:
    s, data = study
    fit = cell_means_fit(data)
    diffs = s.tables["vs_baseline"]
    assert len(diffs) == 7 and (diffs["family"] == 7).all()
    vectors = [contrast(fit, ["|".join(str(getattr(r, a)) for a in AXES)], ["none|0|constant"])
               for r in diffs.itertuples()]
    test = fit.t_test(np.array(vectors))
    ci = np.asarray(test.conf_int(alpha=0.05 / 7))
    assert diffs["diff"].to_numpy() == pytest.approx(np.ravel(test.effect))
    assert (diffs["diff_ci_low"].to_numpy(), diffs["diff_ci_high"].to_numpy()) == (
        pytest.approx(ci[:, 0]), pytest.approx(ci[:, 1]))
    assert diffs["p_holm"].to_numpy() == pytest.approx(multipletests(np.ravel(test.pvalue), method="holm")[1])
    assert diffs[diffs.augment == "notebook"]["significant"].all()  # 1.5 to 3 points: must be found


def test_pairing_by_seed_against_scipy(study) -> None:
    s, data = study
    pairing = s.tables["pairing"].set_index("axis")
    for axis, ref, level in (("augment", "none", "notebook"), ("schedule", "constant", "step")):
        per_seed = data.groupby(["seed", axis], observed=True)["acc"].mean().unstack()
        paired = sps.ttest_rel(per_seed[level], per_seed[ref]).confidence_interval(0.95)
        welch = sps.ttest_ind(per_seed[level], per_seed[ref], equal_var=False).confidence_interval(0.95)
        row = pairing.loc[axis]
        assert row["seeds"] == 3 and row["diff"] == pytest.approx((per_seed[level] - per_seed[ref]).mean())
        assert (row["diff_ci_low"], row["diff_ci_high"]) == (pytest.approx(paired.low), pytest.approx(paired.high))
        assert (row["unpaired_low"], row["unpaired_high"]) == (pytest.approx(welch.low), pytest.approx(welch.high))
        assert row["width_ratio"] == pytest.approx((welch.high - welch.low) / (paired.high - paired.low))


def test_seeds_needed_matches_statsmodels_power(study) -> None:
    s, data = study
    seeds = s.tables["seeds_needed"]
    sd = data.groupby(AXES, observed=True)["acc"].std(ddof=1)
    pooled = math.sqrt((sd**2).mean())
    fit = smf.ols("acc ~ C(augment) * C(weight_decay) * C(schedule) + C(seed)", data).fit()
    paired_sd = math.sqrt(2 * fit.mse_resid)
    expected = [(pooled, TTestIndPower(), "nobs1"), (sd.max(), TTestIndPower(), "nobs1"),
                (paired_sd, TTestPower(), "nobs")]
    assert seeds["std"].to_numpy() == pytest.approx([e[0] for e in expected])
    for row, (spread, power, _) in zip(seeds.itertuples(), expected, strict=True):
        for delta, column in ((0.5, "seeds_for_0_5"), (1.0, "seeds_for_1"), (2.0, "seeds_for_2")):
            solved = power.solve_power(effect_size=delta / spread, alpha=0.05, power=0.8)
            want = max(2, math.ceil(solved)) if np.isfinite(solved) else 2
            assert getattr(row, column) == want, (row.spread, delta)
    assert seeds["seeds_for_0_5"].iloc[0] > seeds["seeds_for_2"].iloc[0]


def test_cell_interval_counts_seeds_and_test_set_on_the_logit_scale(study) -> None:
    s, data = study
    cells = s.tables["cells"].astype({"weight_decay": str})
    for (a, w, sch), group in data.groupby(AXES, observed=True):
        row = cells[(cells.augment == a) & (cells.weight_decay == w) & (cells.schedule == sch)].iloc[0]
        m = 512  # the synthetic test split
        logits = special.logit((group["acc"] / 100 * m + 0.5) / (m + 1))
        p = special.expit(logits.mean())
        seed_var, binom = logits.var(ddof=1) / 3, 1 / (m * p * (1 - p))
        half = sps.t.ppf(0.975, (seed_var + binom) ** 2 / (seed_var**2 / 2)) * math.sqrt(seed_var + binom)
        assert row["test_acc_ci_low"] == pytest.approx(100 * special.expit(logits.mean() - half))
        assert row["test_acc_ci_high"] == pytest.approx(100 * special.expit(logits.mean() + half))
        assert 0 < row["test_acc_ci_low"] < row["test_acc"] < row["test_acc_ci_high"] < 100
        assert row["test_acc_std"] == pytest.approx(group["acc"].std(ddof=1)) and row["interval_note"] == ""


def test_tied_seeds_are_flagged_not_certain(tmp_path: Path) -> None:
    build_store(tmp_path, augments=("none", "notebook"), wds=(0.0,), schedules=("constant",), seeds=(0, 1),
                extras=False, acc=lambda augment, *_: 1.0 if augment == "none" else 0.95)
    with Store.open_existing(store_path(tmp_path)) as store:
        s = analyse(load_runs(store), None, 0.98)
    cells = s.tables["cells"].set_index("augment")
    top = cells.loc["none"]
    assert top["interval_note"] == "all 2 seeds equal: test-set noise only"
    assert top["test_acc_ci_low"] < 100 and top["test_acc_ci_high"] < 100  # never "certainly 100%"
    m = 512
    p = special.expit(special.logit((m + 0.5) / (m + 1)))
    assert top["test_acc_ci_low"] == pytest.approx(
        100 * special.expit(special.logit(p) - sps.norm.ppf(0.975) / math.sqrt(m * p * (1 - p))))
