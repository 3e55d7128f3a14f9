"""The verdicts on synthetic stores with known effects, against direct statsmodels/scipy computations:
the declared scale decides (an interaction on raw points that is none on the logit scale), the
margin decides equivalence (TOST), HC3 only from six seeds per cell, sensitivity rows that name
what flips a verdict, the probability of improvement, the effect at every epoch and the plateau."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import optimize, special
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from test_report_store import PROVENANCE, build_store

from ablations.report import curves
from ablations.report.analysis import judge
from ablations.report.budget import caveat
from ablations.report.reading import answer, pilot_line, reading
from ablations.report.runs import load_runs
from ablations.report.study import analyse
from ablations.store import Store, store_path

M = 512  # synthetic test images
MARGINS = {"augment": 0.5, "weight_decay": 0.3, "schedule": 0.5}
SEEDS6 = tuple(range(6))


def odds_additive(augment: str, wd: float, schedule: str, seed: int) -> float:
    """Effects that add on the logit scale and nowhere else: augmentation and the step each act on the
    odds of an error, the same in both arms, so raw points see an augment x schedule interaction
    (the step gains 0.4 points near 99%, 1.6 near 96%) that the logit scale does not. Weight decay
    does nothing."""
    noise = np.random.default_rng([7, len(augment), int(wd * 1e4), len(schedule), seed]).normal(0, 0.04)
    shared = np.random.default_rng([11, seed]).normal(0, 0.05)  # the seed's share, common to its cells
    z = special.logit(0.99) - 1.5 * (augment != "none") + 0.5 * (schedule == "step") + shared + noise
    return float(special.expit(z))


def notebook_meta(seeds, scale: str | None = "logit", margins=MARGINS) -> dict:
    """The grid file of the notebook's 2x2x2, with its declared analysis unless `scale` is None."""
    meta = {"name": "t", "axes": {"augment": ["none", "notebook"], "weight_decay": [0.0, 1e-3],
                                  "schedule": ["constant", "step"]}, "seeds": list(seeds)}
    if scale is not None:
        meta["analysis"] = {"endpoint": "final_test_acc", "scale": scale, "margins": margins, "plateau_points": 0.2}
    return meta


def study_of(results: Path, *, scale: str | None = "logit", margins=MARGINS, seeds=SEEDS6, acc=odds_additive,
             **kwargs):
    build_store(results, seeds=seeds, extras=False, acc=acc, grid_meta=notebook_meta(seeds, scale, margins), **kwargs)
    with Store.open_existing(store_path(results)) as store:
        return analyse(load_runs(store), None, 0.98)


def direct(s, response: str = "y", cov: str = "HC3"):
    """The store's done runs refitted here: cell means plus the seed block, and the cell names."""
    done = s.runs.done
    data = pd.DataFrame({"cell": done["augment"].astype(str) + "|" + done["weight_decay"].astype(str) + "|"
                         + done["schedule"].astype(str), "seed": done["seed"].astype(str), "acc": done["test_acc"]})
    data["y"] = special.logit((data["acc"] / 100 * M + 0.5) / (M + 1))
    model = smf.ols(f"{response} ~ 0 + C(cell) + C(seed)", data)
    return (model.fit(cov_type="HC3", use_t=True) if cov == "HC3" else model.fit()), data


def main_contrast(fit, position: int, level: str, ref: str) -> np.ndarray:
    names = fit.model.exog_names
    vec = np.zeros(len(names))
    for i, name in enumerate(names):
        if name.startswith("C(cell)["):
            cell = name[len("C(cell)["):-1].split("|")
            vec[i] = 0.25 if cell[position] == level else -0.25 if cell[position] == ref else 0.0
    return vec


def points_at(d: float, centre: float) -> float:
    return 100 * (special.expit(centre + d / 2) - special.expit(centre - d / 2))


@pytest.fixture(scope="module")
def logit_study(tmp_path_factory):
    return study_of(tmp_path_factory.mktemp("logit"))


def verdict(s, term: str) -> str:
    return s.tables["effects"].set_index("term").loc[term, "verdict"]


def test_the_declared_scale_decides_whether_an_interaction_exists(logit_study, tmp_path: Path) -> None:
    points = study_of(tmp_path, scale="points")
    # on raw points the step helps the augmented arm four times as much: an interaction
    assert verdict(points, "augment x schedule") == "differs"
    # on the logit scale it is the same cut in the odds of an error in both arms, within the margin
    assert verdict(logit_study, "augment x schedule") == "equivalent within ±0.5"
    assert logit_study.open_interactions == [] and logit_study.tables["simple_effects"].empty
    # so the logit study reads its main effects alone, the points study per level
    assert points.open_interactions and not points.tables["simple_effects"].empty
    lines = answer(logit_study)
    assert any(line.startswith("**schedule** `step` vs `constant`") for line in lines)
    # the other scale is a sensitivity row, and the reading says it disagrees
    sens = logit_study.tables["sensitivity"].set_index(["term", "method"])
    row = sens.loc[("augment x schedule", "points scale")]
    assert row["verdict"] == "differs" and not row["agrees"]
    assert "`augment x schedule` `notebook x step` by points scale: differs" in " ".join(reading(logit_study))


def test_effects_and_tost_equal_a_direct_hc3_logit_fit(logit_study) -> None:
    s = logit_study
    assert s.model.covariance == "HC3" and s.model.replicates == 6  # six seeds per cell: robust errors
    fit, data = direct(s)
    effects = s.tables["effects"].set_index("term")
    centre = data.groupby("cell")["y"].mean().mean()
    vectors = [main_contrast(fit, 0, "notebook", "none"), main_contrast(fit, 1, "0.001", "0"),
               main_contrast(fit, 2, "step", "constant")]
    test = fit.t_test(np.array(vectors))
    d, se, df = np.ravel(test.effect), np.ravel(test.sd), fit.df_resid
    bounds = [optimize.brentq(lambda x, m=m: points_at(x, centre) - m, 0, 50) for m in MARGINS.values()]
    p_tost = [max(sps.t.sf((d[i] + b) / se[i], df), sps.t.cdf((d[i] - b) / se[i], df)) for i, b in enumerate(bounds)]
    table = effects.loc[["augment", "weight_decay", "schedule"]]
    assert table["diff"].to_numpy() == pytest.approx(d) and table["se"].to_numpy() == pytest.approx(se)
    assert table["p_tost"].to_numpy() == pytest.approx(multipletests(p_tost, method="holm")[1])
    assert table["points"].to_numpy() == pytest.approx([points_at(x, centre) for x in d])
    assert table["verdict"].tolist() == ["differs", "equivalent within ±0.3", "differs"]


def test_a_tost_flips_with_the_margin(tmp_path: Path) -> None:
    tight = study_of(tmp_path, margins={**MARGINS, "weight_decay": 0.01})
    assert verdict(tight, "weight_decay") == "not resolved"  # cannot rule out 0.01 points
    none = study_of(tmp_path / "none", scale=None)  # no [analysis]: defaults, no margins at all
    assert verdict(none, "weight_decay") == "not resolved" and not none.plan.declared
    assert none.model.scale == "logit"  # the default scale for accuracy endpoints
    assert "margins (points): none declared" in answer(none)[-2]


def test_below_six_seeds_the_verdicts_use_the_classical_covariance(tmp_path: Path) -> None:
    s = study_of(tmp_path, seeds=tuple(range(5)))
    assert s.model.covariance == "classical"
    fit, _ = direct(s, cov="classical")
    row = s.tables["effects"].set_index("term").loc["augment"]
    assert row["se"] == pytest.approx(float(np.ravel(fit.t_test(main_contrast(fit, 0, "notebook", "none")).sd)[0]))
    assert "too small for a robust test" in " ".join(reading(s))
    sens = s.tables["sensitivity"]
    assert "HC3 covariance" in set(sens["method"])


def test_one_run_that_drives_a_verdict_is_named(tmp_path: Path) -> None:
    def outlier(augment, wd, schedule, seed):
        base = odds_additive(augment, wd, schedule, seed)
        return 0.90 if (augment, wd, schedule, seed) == ("notebook", 1e-3, "constant", 0) else base

    s = study_of(tmp_path, scale="points", acc=outlier)
    loo = s.tables["sensitivity"]
    loo = loo[loo["method"].str.startswith("leave one run out")].set_index("term")
    # one run at 90% hides that weight decay does nothing: without it, the margin is met
    assert loo.loc["weight_decay", "verdict"] == ("not resolved, but equivalent within ±0.3 without augment=notebook, "
                                                  "weight_decay=0.001, schedule=constant, seed 0")
    assert not loo.loc["weight_decay", "agrees"]


def test_runs_from_two_machines_are_refitted_on_one_machine_alone(tmp_path: Path) -> None:
    # seeds 4 and 5 trained on another machine in the same precision, as a study resumed elsewhere
    other = {**PROVENANCE, "device_name": "Other CPU (1 thread)", "cpu_capability": "AMX-BF16"}
    s = study_of(tmp_path, provenance=lambda i: other if i % len(SEEDS6) >= 4 else PROVENANCE)
    warning = next(line for line in reading(s) if "Warning" in line)
    assert warning.startswith("**Warning: the runs of this store come from more than one machine**")
    assert "all in fp32" in warning and "refits the model on the runs of the machine with the most" in warning
    rows = s.tables["sensitivity"]
    rows = rows[rows["method"] == "one machine alone (32 of 48 runs: Test CPU (2 threads))"].set_index("term")
    assert len(rows) == 7  # every main effect and interaction
    # a direct fit of seeds 0-3 alone: four seeds per cell, so the classical covariance
    _, data = direct(s)
    mine = data[data["seed"].isin(["0", "1", "2", "3"])]
    fit = smf.ols("y ~ 0 + C(cell) + C(seed)", mine).fit()
    centre = mine.groupby("cell")["y"].mean().mean()
    d = np.ravel(fit.t_test(main_contrast(fit, 0, "notebook", "none")).effect)[0]
    assert rows.loc["augment", "points"] == pytest.approx(points_at(d, centre))
    assert rows.loc["augment", "verdict"] == "differs" and rows.loc["augment", "agrees"]


def test_runs_of_one_machine_get_no_machine_row(logit_study) -> None:
    assert not logit_study.tables["sensitivity"]["method"].str.startswith("one machine").any()
    assert not any("Warning" in line for line in reading(logit_study))


def test_probability_of_improvement_is_paired_and_reproducible(logit_study) -> None:
    s = logit_study
    table = s.tables["improvement"].set_index("axis")
    done = s.runs.done.assign(wd=lambda d: d["weight_decay"].astype(str))
    wide = done.pivot_table(index="seed", columns=["augment", "wd", "schedule"], values="test_acc", observed=True)
    wins = [np.sign(wide[("notebook", w, sch)] - wide[("none", w, sch)]) for w in ("0", "0.001")
            for sch in ("constant", "step")]
    share = ((np.array(wins) > 0) + 0.5 * (np.array(wins) == 0)).mean()
    row = table.loc["augment"]
    assert row["p_improve"] == pytest.approx(share) == 0.0  # augmentation never wins a matched pair
    assert row["pairs"] == 24 and row["seeds"] == 6
    step = table.loc["schedule"]
    assert step["p_improve"] == 1.0 and step["p_improve_ci_low"] <= step["p_improve"] <= step["p_improve_ci_high"]
    wd = table.loc["weight_decay"]
    assert 0 < wd["p_improve_ci_low"] < wd["p_improve"] < wd["p_improve_ci_high"] < 1
    again = analyse(s.runs, None, 0.98).tables["improvement"]
    pd.testing.assert_frame_equal(again, s.tables["improvement"])  # a seeded bootstrap: the same interval


def saturating(acc: float, augment: str, e: int, n: int) -> float:
    """Validation accuracy that levels off: quickly without augmentation, slowly with it."""
    rate = 1.2 if augment == "none" else 0.3
    return acc - 0.08 * math.exp(-rate * e)


def queued(r, run_ids):
    """The same runs with `run_ids` back in the queue, as a pilot still running has them."""
    mark = lambda frame: frame.assign(status=frame["status"].where(~frame["run_id"].isin(run_ids), "queued"))  # noqa: E731
    return dataclasses.replace(r, runs=mark(r.runs), epochs=mark(r.epochs))


def test_plateau_and_the_budget_pilot_read_validation_only(tmp_path: Path) -> None:
    s = study_of(tmp_path, seeds=(0, 1), budgets=(4, 20), curve=saturating)
    plateau = s.tables["plateau"]
    assert set(plateau["last_epoch"]) == {4, 20} and set(plateau["epochs"]) == {"4", "20"}
    row = plateau[(plateau["last_epoch"] == 20) & (plateau["augment"] == "notebook")].iloc[0]
    cell = s.tables["val_curves"]
    curve = cell[(cell["epochs"] == "20") & (cell["augment"] == "notebook") & (cell["weight_decay"] == "0")
                 & (cell["schedule"] == "constant")].set_index("epoch")["val_acc"]
    window = curve.loc[16:20]
    assert row["window"] == "16–20"
    slope = np.polyfit(window.index.to_numpy(float), window.to_numpy(float), 1)[0]
    first = plateau[(plateau["last_epoch"] == 20) & (plateau["augment"] == "notebook")
                    & (plateau["weight_decay"] == "0")
                    & (plateau["schedule"] == "constant")].iloc[0]
    assert first["rise"] == pytest.approx(slope * 4)
    # its interval: one line through both seeds' own points, an intercept per seed, as statsmodels fits it
    points = s.runs.epochs[(s.runs.epochs["epochs"].astype(str) == "20") & (s.runs.epochs["augment"] == "notebook")
                           & (s.runs.epochs["weight_decay"].astype(str) == "0")
                           & (s.runs.epochs["schedule"] == "constant") & (s.runs.epochs["epoch"] >= 16)]
    fit = smf.ols("val_acc ~ epoch + C(seed)", points.assign(seed=points["seed"].astype(str))).fit()
    low, high = fit.conf_int().loc["epoch"] * 4
    assert fit.params["epoch"] * 4 == pytest.approx(first["rise"])  # balanced seeds: the seed-mean line's slope
    assert (first["rise_ci_low"], first["rise_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert first["shown"] == ("gains under 0.2" if high < 0.2 else "gains 0.2 or more" if low >= 0.2
                              else "not resolved")
    # at 4 epochs the augmented cells are cut in the steep part of their curve: the seeds show the rise
    short = plateau[plateau["last_epoch"] == 4].set_index("augment")["shown"]
    assert (short.loc["notebook"] == "gains 0.2 or more").all() and (short.loc["none"] == "gains under 0.2").all()
    assert s.tables["budgets"].set_index("budget").loc["4", "rising_cells"] == 4
    assert "4 epochs: 4 of 8 cells plateaued, 4 shown still rising" in " ".join(answer(s))
    budgets = s.tables["budgets"].set_index("budget")
    assert bool(budgets.loc["20", "all_plateaued"]) and not bool(budgets.loc["4", "all_plateaued"])
    assert "the smallest budget at which every cell plateaued is 20 epochs" in answer(s)[0]  # a pilot's answer leads
    assert "test_acc" not in plateau.columns  # the test set plays no part

    # a budget with a run still to finish proves nothing yet, and a larger budget cannot be picked over it
    short = list(s.runs.runs.loc[s.runs.runs["epochs"].astype(str) == "4", "run_id"])
    unfinished = queued(s.runs, short[:1])
    pilot = curves.budgets(unfinished, curves.plateau(unfinished, 0.2), 0.2)
    assert pilot.set_index("budget").loc["4", "runs_pending"] == 1 and set(pilot["cells"]) == {8}
    assert curves.smallest_budget(pilot) is None
    assert "no budget has yet shown every cell plateaued" in pilot_line(pilot)
    # a budget none of whose runs is done: no cell measured, so not "every cell plateaued"
    none_done = queued(s.runs, short)
    pilot = curves.budgets(none_done, curves.plateau(none_done, 0.2), 0.2).set_index("budget")
    assert not pilot.loc["4", "all_plateaued"] and pilot.loc["4", "plateaued_cells"] == 0


def test_a_gain_is_shown_under_or_over_the_plateau_only_by_an_interval_clear_of_it() -> None:
    assert curves.resolved(-0.1, 0.19, 0.2) == "gains under 0.2"
    assert curves.resolved(-1.5, -0.1, 0.2) == "gains under 0.2"  # a falling line has not risen either
    assert curves.resolved(0.2, 1.5, 0.2) == "gains 0.2 or more"
    assert curves.resolved(-0.3, 0.25, 0.2) == "not resolved"  # a point estimate under 0.2 is not enough
    assert curves.resolved(math.nan, math.nan, 0.2) == "not resolved"  # one seed, two epochs: no interval


def test_the_effect_at_every_epoch_is_the_model_of_that_epoch(logit_study) -> None:
    s = logit_study
    by_epoch = s.tables["effect_by_epoch"]
    assert sorted(set(by_epoch["epoch"])) == [1, 2, 3]
    rows = s.runs.epochs[(s.runs.epochs["epoch"] == 2)]
    m = 102  # synthetic validation split: a tenth of 1,024 train images
    data = pd.DataFrame({"cell": rows["augment"].astype(str) + "|" + rows["weight_decay"].astype(str) + "|"
                         + rows["schedule"].astype(str), "seed": rows["seed"].astype(str),
                         "y": special.logit((rows["val_acc"] / 100 * m + 0.5) / (m + 1))})
    fit = smf.ols("y ~ 0 + C(cell) + C(seed)", data).fit(cov_type="HC3", use_t=True)
    centre = data.groupby("cell")["y"].mean().mean()
    d = float(fit.t_test(main_contrast(fit, 0, "notebook", "none")).effect[0])
    row = by_epoch[(by_epoch["epoch"] == 2) & (by_epoch["axis"] == "augment")].iloc[0]
    assert row["points"] == pytest.approx(points_at(d, centre))
    full = " ".join(reading(s))
    assert "augmentation gap on validation accuracy does not close" in full
    assert "A step schedule's effect is only defined at the end of its own schedule" in full


def test_a_run_alone_in_its_cell_leaves_hc3_undefined_and_the_report_on_the_classical_test(tmp_path: Path) -> None:
    # a store while its last seed runs: one cell has a single done run, whose leverage is 1, so HC3
    # divides 0 by 0; the ANOVA keeps its classical columns and leaves the robust ones empty
    s = study_of(tmp_path, seeds=(0, 1))
    alone = s.runs.runs.loc[(s.runs.runs["seed"] == 1) & (s.runs.runs["augment"] == "notebook")
                            & (s.runs.runs["weight_decay"].astype(str) == "0")
                            & (s.runs.runs["schedule"] == "step"), "run_id"]
    partial = analyse(queued(s.runs, list(alone)), None, 0.98)
    anova = partial.tables["anova"].set_index("term")
    assert anova.loc["augment", "p"] < 0.05 and anova.loc["augment", "F"] > 0
    assert anova["p_hc3"].isna().all() and anova["F_hc3"].isna().all()


def test_a_plateau_is_claimed_for_every_cell_only_once_every_cell_is_measured(tmp_path: Path) -> None:
    s = study_of(tmp_path, seeds=(0, 1), curve=lambda acc, augment, e, n: acc)  # flat: every cell plateaued
    assert any("every cell's validation accuracy rose less than 0.2 points" in line for line in reading(s))
    # a store still filling: the augmented cells have no done run yet
    augmented = list(s.runs.runs.loc[s.runs.runs["augment"] == "notebook", "run_id"])
    partial = analyse(queued(s.runs, augmented), None, 0.98)
    text = " ".join(reading(partial))
    assert "each of the 4 cells with a done run (of 8 in the design) rose less than 0.2 points" in text
    assert "every cell's validation accuracy" not in text and "trained to a plateau" not in text


def high(augment: str, wd: float, schedule: str, seed: int) -> float:
    """Final accuracies of models that fit their training set (train accuracy over the 99% floor)."""
    noise = np.random.default_rng([5, len(augment), int(wd * 1e4), len(schedule), seed]).normal(0, 0.04)
    return float(special.expit(special.logit(0.992) - 0.3 * (augment != "none") + 0.3 * (schedule == "step") + noise))


def dipped(results: Path, seeds: tuple[int, ...]):
    """A flat 20-epoch store whose augmented cells lose 10 points of validation accuracy at epoch 16, the
    first epoch of the last fifth, in `seeds`: one bad epoch of a constant learning rate's jitter."""
    build_store(results, seeds=SEEDS6, extras=False, acc=high, budgets=(20,), curve=lambda acc, augment, e, n: acc,
                grid_meta=notebook_meta(SEEDS6))
    with sqlite3.connect(store_path(results)) as db:
        db.execute("UPDATE epochs SET val_acc = val_acc - 0.10 WHERE epoch = 16 AND run_id IN (SELECT run_id FROM runs "
                   f"WHERE json_extract(config, '$.augment') = 'notebook' AND seed IN ({','.join(map(str, seeds))}))")
    with Store.open_existing(store_path(results)) as store:
        return analyse(load_runs(store), None, 0.98)


def test_one_seeds_dip_reads_plateau_not_shown_and_a_dip_in_every_seed_under_trained(tmp_path: Path) -> None:
    s = dipped(tmp_path / "one", seeds=(0,))
    plateau = s.tables["plateau"].set_index(["augment", "weight_decay", "schedule"])
    cell = plateau.loc[("notebook", "0", "constant")]
    # the least-squares line through the seed mean: the 10/6-point dip at its first epoch tilts it up
    curve = s.tables["val_curves"]
    mean = curve[(curve["augment"] == "notebook") & (curve["weight_decay"] == "0") & (curve["schedule"] == "constant")
                 & (curve["epoch"] >= 16)]
    assert cell["rise"] == pytest.approx(np.polyfit(mean["epoch"], mean["val_acc"], 1)[0] * 4) and cell["rise"] >= 0.2
    assert not cell["plateaued"] and cell["shown"] == "not resolved" and cell["rise_ci_low"] < 0.2
    # the sensitivity column: scipy's Theil-Sen line through the same points, which the one dip barely moves
    theil = sps.theilslopes(mean["val_acc"], mean["epoch"], alpha=0.95)
    assert (cell["robust_rise"], cell["robust_rise_ci_low"], cell["robust_rise_ci_high"]) == (
        pytest.approx(4 * theil.slope), pytest.approx(4 * theil.low_slope), pytest.approx(4 * theil.high_slope))
    assert abs(cell["robust_rise"]) < 0.2
    first = answer(s)[0]
    assert first.startswith("**Plateau not shown** in 4 of 8 cells") and "Under-trained" not in " ".join(reading(s))
    assert f"augment=notebook, weight_decay=0, schedule=constant: {cell['rise']:+.2f}, 95% CI " in first
    assert "each of those intervals holds zero" in first and "1 more cell in the Plateau table" in first
    assert "Findings that involve those cells hold at this budget" in first
    # an interval above zero shows a cell still learning even where it does not show the gain reaching 0.2
    learning = dataclasses.replace(s.training, evidence=s.training.evidence.assign(rise_ci_low=0.05))
    assert not learning.plateau_not_shown and caveat(learning).startswith("**Under-trained**")

    # the same dip in every seed is no jitter: the seeds show the line rising, so the models are under-trained
    every = dipped(tmp_path / "every", seeds=SEEDS6)
    rows = every.tables["plateau"]
    assert (rows.loc[rows["augment"] == "notebook", "shown"] == "gains 0.2 or more").all()
    assert answer(every)[0].startswith("**Under-trained**")
    assert "Plateau not shown" not in " ".join(reading(every))


def _family(diffs: list[float], se: float, df: float = 100.0) -> pd.DataFrame:
    """One family of contrasts on the points scale as the model hands them to judge(): Bonferroni intervals
    and Holm-adjusted p, computed here with scipy and statsmodels."""
    m = len(diffs)
    half = sps.t.ppf(1 - 0.05 / (2 * m), df) * se
    p = [2 * sps.t.sf(abs(d) / se, df) for d in diffs]
    return pd.DataFrame({"diff": diffs, "diff_ci_low": [d - half for d in diffs], "diff_ci_high": [d + half for d in diffs],
                         "se": se, "df": df, "p": p, "p_holm": multipletests(p, method="holm")[1], "family": m})


def test_a_verdict_its_interval_seems_to_contradict_says_why() -> None:
    """Holm's step-down test can reject a contrast whose Bonferroni interval still holds 0 (the second p of
    three is compared with 5%/2, the interval built at 5%/3), and a TOST can show equivalence while the 95%
    interval reaches past the margin: the verdict follows the declared test, and a note says why the two
    differ, only where they do."""
    family = _family([5.0, 2.36, 0.1], se=1.0)  # p: < 1e-5, 0.020, 0.92
    assert family["p_holm"][1] < 0.05 and family["diff_ci_low"][1] < 0  # the case itself, from scipy
    judged = judge(family, [0.5, 0.5, 0.5], centre=0.0, scale="points")
    assert list(judged["verdict"]) == ["differs", "differs", "not resolved"]
    assert judged["verdict_note"][1].startswith("the interval includes 0 though Holm's test rejects")
    assert judged["verdict_note"][0] == judged["verdict_note"][2] == ""

    lone = _family([0.0], se=0.28)  # TOST: t = 0.5 / 0.28 = 1.79 > 1.66; 95% interval ±0.56 > 0.5
    judged = judge(lone, [0.5], centre=0.0, scale="points")
    assert judged["verdict"][0] == "equivalent within ±0.5"
    assert judged["verdict_note"][0].startswith("the interval reaches past the margin though the TOST shows equivalence")
    assert judge(_family([0.0], se=0.2), [0.5], centre=0.0, scale="points")["verdict_note"][0] == ""  # ±0.40: inside
