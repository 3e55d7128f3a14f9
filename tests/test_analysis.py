"""The factorial analysis of a real store against direct statsmodels/scipy computations on the
values written: the ANOVA on the logit scale (classical and HC3), the effects with their verdicts,
simple effects, comparisons with the baseline, pairing by seed, seeds needed, the per-cell interval."""

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
TEST_IMAGES = 512  # the synthetic test split
FORMULA = "y ~ C(augment) * C(weight_decay) * C(schedule) + C(seed)"


def logit(acc_percent: pd.Series, m: int = TEST_IMAGES) -> pd.Series:
    """The empirical logit the report documents: logit((k + 1/2) / (m + 1)), k = accuracy x m."""
    return special.logit((acc_percent / 100 * m + 0.5) / (m + 1))


def points_at(d: float, centre: float) -> float:
    return 100 * (special.expit(centre + d / 2) - special.expit(centre - d / 2))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    results = tmp_path_factory.mktemp("analysis")
    written = build_store(results)
    with Store.open_existing(store_path(results)) as store:
        runs = load_runs(store)
    data = frame(written)
    for axis in AXES:  # the reference level first: the model's treatment coding
        data[axis] = pd.Categorical(data[axis], categories=[BASE[axis], *sorted(set(data[axis]) - {BASE[axis]})])
    return analyse(runs, None, 0.98), data.assign(y=logit(data["acc"]))


def cell_means_fit(data: pd.DataFrame, response: str = "y", cov: str = "nonrobust"):
    """The same model in another parametrization: one mean per cell plus the seed block. Contrasts
    do not depend on the parametrization, so they must agree with the report's exactly."""
    cells = data.assign(cell=data[AXES].astype(str).agg("|".join, axis=1))
    fit = smf.ols(f"{response} ~ 0 + C(cell) + C(seed)", cells)
    return fit.fit(cov_type="HC3", use_t=True) if cov == "HC3" else fit.fit()


def contrast(fit, plus: list[str], minus: list[str]) -> np.ndarray:
    names = fit.model.exog_names
    vec = np.zeros(len(names))
    for cells, sign in ((plus, 1.0), (minus, -1.0)):
        for c in cells:
            vec[names.index(f"C(cell)[{c}]")] += sign / len(cells)
    return vec


def every_cell(data: pd.DataFrame) -> list[str]:
    return ["|".join(c) for c in data[AXES].astype(str).drop_duplicates().itertuples(index=False)]


def test_anova_is_statsmodels_type2_on_the_logit_scale_with_hc3_beside_it(study) -> None:
    s, data = study
    fit = smf.ols(FORMULA, data).fit()
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
    # three seeds per cell: too few for HC3, so the verdicts use the classical covariance
    assert s.model.covariance == "classical" and s.model.scale == "logit"
    assert s.model.formula == "logit(test acc) ~ C(augment) * C(weight_decay) * C(schedule) + C(seed)"


def test_effects_are_contrasts_of_the_logit_fit_back_in_points(study) -> None:
    s, data = study
    fit = cell_means_fit(data)
    cells = every_cell(data)
    effects = s.tables["effects"].set_index(["term", "level"])
    mains = [("augment", "notebook", 0), ("weight_decay", "0.001", 1), ("schedule", "step", 2)]
    vectors = [contrast(fit, [c for c in cells if c.split("|")[i] == lvl],
                        [c for c in cells if c.split("|")[i] == BASE[a]]) for a, lvl, i in mains]
    test = fit.t_test(np.array(vectors))
    ci = np.asarray(test.conf_int(alpha=0.05 / 3))
    centre = data.groupby(AXES, observed=True)["y"].mean().mean()
    for j, (axis, level, _) in enumerate(mains):
        row = effects.loc[(axis, level)]
        assert row["diff"] == pytest.approx(float(np.ravel(test.effect)[j]))
        assert (row["diff_ci_low"], row["diff_ci_high"]) == (pytest.approx(ci[j, 0]), pytest.approx(ci[j, 1]))
        assert row["points"] == pytest.approx(points_at(row["diff"], centre))
        assert row["points_ci_low"] == pytest.approx(points_at(ci[j, 0], centre))
        high, low = special.expit(centre + row["diff"] / 2), special.expit(centre - row["diff"] / 2)
        assert row["error_change"] == pytest.approx((1 - high) / (1 - low) - 1)
    holm = multipletests(np.ravel(test.pvalue), method="holm")[1]
    assert effects.loc[[(a, lvl) for a, lvl, _ in mains], "p_holm"].to_numpy() == pytest.approx(holm)
    # written: augmentation costs 3 points, the step gains; no margins declared, so nothing is "equivalent"
    assert effects.loc[("augment", "notebook"), "verdict"] == "differs"
    assert effects.loc[("schedule", "step"), "verdict"] == "differs"
    assert effects.loc[("weight_decay", "0.001"), "verdict"] == "not resolved"


def test_the_interaction_contrast_is_a_difference_of_differences(study) -> None:
    s, data = study
    fit = cell_means_fit(data)
    row = s.tables["effects"].set_index("term").loc["augment x schedule"]
    cells = every_cell(data)

    def mean(aug, sch):
        return [c for c in cells if c.split("|")[0] == aug and c.split("|")[2] == sch]

    vec = contrast(fit, mean("notebook", "step"), mean("none", "step")) - contrast(
        fit, mean("notebook", "constant"), mean("none", "constant"))
    assert row["diff"] == pytest.approx(float(fit.t_test(vec).effect[0]))
    assert row["kind"] == "interaction" and row["family"] == 4  # the interactions are their own family
    assert row["verdict"] == "differs"  # written with an augment x schedule interaction


def test_simple_effects_for_every_factor_an_open_interaction_qualifies(study) -> None:
    s, data = study
    # without margins no interaction can be shown negligible, so every factor is read per level
    assert set(map(frozenset, s.open_interactions)) == {frozenset(t) for t in (
        ("augment", "weight_decay"), ("augment", "schedule"), ("weight_decay", "schedule"), tuple(AXES))}
    simple = s.tables["simple_effects"]
    assert set(simple["term"]) == set(AXES) and (simple["family"] == 12).all()
    fit = cell_means_fit(data)
    row = simple[(simple.term == "augment") & (simple.within == "schedule=step, weight_decay=0")].iloc[0]
    test = fit.t_test(contrast(fit, ["notebook|0|step"], ["none|0|step"]))
    assert row["diff"] == pytest.approx(float(test.effect[0]))
    assert row["diff_ci_low"] == pytest.approx(np.asarray(test.conf_int(alpha=0.05 / 12))[0, 0])
    aug = simple[(simple.term == "augment") & simple.within.str.endswith("weight_decay=0")].set_index("within")
    constant, step = (aug.loc[f"schedule={s}, weight_decay=0", "points"] for s in ("constant", "step"))
    assert constant < step < 0


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
    assert (diffs[diffs.augment == "notebook"]["verdict"] == "differs").all()  # 1.5 to 3 points: must be found


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


def test_seeds_needed_matches_statsmodels_power_in_points(study) -> None:
    s, data = study
    seeds = s.tables["seeds_needed"]
    sd = data.groupby(AXES, observed=True)["acc"].std(ddof=1)
    pooled = math.sqrt((sd**2).mean())
    fit = smf.ols(FORMULA.replace("y ~", "acc ~"), data).fit()
    paired_sd = math.sqrt(2 * fit.mse_resid)
    expected = [(pooled, TTestIndPower()), (sd.max(), TTestIndPower()), (paired_sd, TTestPower())]
    assert seeds["std"].to_numpy() == pytest.approx([e[0] for e in expected])
    assert seeds["design"].tolist() == ["two cells compared unpaired"] * 2 + ["two cells paired by seed"]
    for row, (spread, power) in zip(seeds.itertuples(), expected, strict=True):
        for delta, column in ((0.5, "seeds_for_0_5"), (1.0, "seeds_for_1"), (2.0, "seeds_for_2")):
            solved = power.solve_power(effect_size=delta / spread, alpha=0.05, power=0.8)
            want = max(2, math.ceil(solved)) if np.isfinite(solved) else 2
            assert getattr(row, column) == want, (row.spread, delta)


def test_cell_interval_counts_seeds_and_test_set_on_the_logit_scale(study) -> None:
    s, data = study
    cells = s.tables["cells"].astype({"weight_decay": str})
    for (a, w, sch), group in data.groupby(AXES, observed=True):
        row = cells[(cells.augment == a) & (cells.weight_decay == w) & (cells.schedule == sch)].iloc[0]
        logits = logit(group["acc"])
        p = special.expit(logits.mean())
        seed_var, binom = logits.var(ddof=1) / 3, 1 / (TEST_IMAGES * p * (1 - p))
        half = sps.t.ppf(0.975, (seed_var + binom) ** 2 / (seed_var**2 / 2)) * math.sqrt(seed_var + binom)
        assert row["test_acc_ci_low"] == pytest.approx(100 * special.expit(logits.mean() - half))
        assert row["test_acc_ci_high"] == pytest.approx(100 * special.expit(logits.mean() + half))
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
    p = special.expit(special.logit((TEST_IMAGES + 0.5) / (TEST_IMAGES + 1)))
    assert top["test_acc_ci_low"] == pytest.approx(
        100 * special.expit(special.logit(p) - sps.norm.ppf(0.975) / math.sqrt(TEST_IMAGES * p * (1 - p))))
