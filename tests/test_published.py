"""The published studies recompute: their ANOVA tables equal a direct statsmodels fit of their own
store on the scale the study declares (OLS of final test accuracy, or of its logit, on every axis
and all interactions, the seed as a block, Type II sums of squares), and their stores are single
files a reader leaves alone."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import special
from statsmodels.stats.anova import anova_lm

from ablations.api import report

RESULTS = Path(__file__).resolve().parents[1] / "results"
STUDIES = ("notebook_converged", "notebook_cpu", "quick", "precision_parity")


def runs_of(study: str) -> tuple[pd.DataFrame, list[str]]:
    frame, axes, _ = store_of(study)
    return frame, axes


def store_of(study: str) -> tuple[pd.DataFrame, list[str], str]:
    """Done runs (axes, seed, accuracy in points, test images), the axes, and the declared scale
    (logit unless the grid's [analysis] says points: accuracies near 100% go on the logit scale)."""
    with sqlite3.connect(f"file:{RESULTS / study / 'runs.sqlite'}?mode=ro", uri=True) as db:
        grid = json.loads(db.execute("SELECT value FROM meta WHERE key = 'grid'").fetchone()[0])
        rows = db.execute("SELECT config, seed, final_test_acc, provenance FROM runs WHERE status = 'done'").fetchall()
    axes = list(grid["axes"])
    frame = pd.DataFrame([{**{a: str(json.loads(c)[a]) for a in axes}, "seed": str(s), "acc": 100 * acc,
                           "m": _test_images(json.loads(c), json.loads(p or "{}"))} for c, s, acc, p in rows])
    return frame, axes, grid.get("analysis", {}).get("scale", "logit")


def _test_images(config: dict, provenance: dict) -> float:
    sizes = provenance.get("split_sizes") or {}
    return float(sizes.get("test") or config.get("test_subset") or 10_000)  # MNIST's test split


@pytest.mark.parametrize("study", STUDIES)
def test_the_published_anova_is_a_direct_statsmodels_fit_of_its_store(study):
    frame, axes, scale = store_of(study)
    # the declared scale: the empirical logit of the fraction correct, logit((k + 1/2) / (m + 1)), or raw points
    frame["y"] = special.logit((frame["acc"] / 100 * frame["m"] + 0.5) / (frame["m"] + 1)) if scale == "logit" \
        else frame["acc"]
    formula = "y ~ " + " * ".join(f"C({a})" for a in axes) + " + C(seed)"
    direct = anova_lm(smf.ols(formula, frame).fit(), typ=2)
    published = pd.read_csv(RESULTS / study / "tables" / "anova.csv")
    # a term is its set of factors, whatever order a table writes them in
    by_factors = {frozenset(["seed"] if t == "seed (block)" else t.split(" x ")): row
                  for t, row in published.set_index("term").iterrows() if t != "residual"}
    for term, row in direct.drop(index="Residual").iterrows():
        factors = frozenset(t[2:-1] for t in term.split(":"))
        assert by_factors[factors]["F"] == pytest.approx(row["F"], rel=1e-9), (study, term)
        assert by_factors[factors]["sum_sq"] == pytest.approx(row["sum_sq"], rel=1e-9), (study, term)
    assert len(by_factors) == len(direct) - 1  # every term of the model, and no other
    residual = published.set_index("term").loc["residual"]
    assert residual["sum_sq"] == pytest.approx(direct.loc["Residual", "sum_sq"], rel=1e-9)


@pytest.mark.parametrize("study", STUDIES)
def test_a_published_store_is_one_file_that_reading_leaves_alone(study, tmp_path):
    folder = RESULTS / study
    before = sorted(p.name for p in folder.iterdir())
    db = sqlite3.connect(folder / "runs.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.execute("SELECT count(*) FROM runs").fetchone()
    db.close()
    assert sorted(p.name for p in folder.iterdir()) == before
    assert not list(folder.glob("runs.sqlite-*"))


def converged() -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """The headline study's grid, its runs (axes as the configs store them: 0.0, 0.001) and the done runs' epochs."""
    with sqlite3.connect(f"file:{RESULTS / 'notebook_converged' / 'runs.sqlite'}?mode=ro", uri=True) as db:
        grid = json.loads(db.execute("SELECT value FROM meta WHERE key = 'grid'").fetchone()[0])
        runs = pd.read_sql("SELECT run_id, config, seed, status, provenance FROM runs", db)
        epochs = pd.read_sql("SELECT e.run_id, e.epoch, e.val_acc FROM epochs e JOIN runs r USING (run_id) "
                             "WHERE r.status = 'done'", db)
    for a in grid["axes"]:
        runs[a] = [json.loads(c)[a] for c in runs["config"]]
    return grid, runs, epochs


def test_the_converged_study_is_its_declared_design_and_is_published_only_when_done():
    """The notebook's 8 cells x 6 seeds, every finished run in fp32, the analysis (endpoint, scale, a margin
    per factor, the plateau rule) in the grid file the runs were made from; the report is published once every
    run is done, and until then results/README.md lists the study as in progress."""
    grid, runs, _ = converged()
    axes = sorted(grid["axes"])
    assert axes == ["augment", "schedule", "weight_decay"]
    assert len(runs) == 48 and runs.groupby(axes)["seed"].nunique().eq(6).all()
    done = runs[runs["status"] == "done"]
    assert {json.loads(p)["precision"] for p in done["provenance"]} == {"fp32"}
    analysis = grid["analysis"]
    assert (analysis["endpoint"], analysis["scale"]) == ("final_test_acc", "logit")
    assert set(analysis["margins"]) == set(axes) and analysis["plateau_points"] == 0.2
    complete = len(done) == len(runs)
    assert (RESULTS / "notebook_converged" / "REPORT.md").exists() == complete
    index = (RESULTS / "README.md").read_text()
    in_progress = index.split("## In progress")[1].split("\n## ")[0] if "## In progress" in index else ""
    assert ("notebook_converged" in in_progress) == (not complete)


def test_the_converged_studys_plateau_is_recomputed_from_its_epochs_and_its_reading_follows_it(tmp_path):
    """The report of the study's store (its done runs): each cell's rise over the last fifth of training (the
    least-squares line through the seed-mean validation accuracy, epochs 96-120) recomputed from the store's
    epochs equals its plateau table, and its first line says what those rises show: trained to a plateau only
    if every cell rose less than the declared 0.2 points."""
    grid, runs, epochs = converged()
    shutil.copy(RESULTS / "notebook_converged" / "runs.sqlite", tmp_path / "runs.sqlite")
    report_md = report(tmp_path, formats="csv").read_text()
    axes = sorted(grid["axes"])
    points, last = grid["analysis"]["plateau_points"], grid["fixed"]["epochs"]
    first = last - round(last / 5)
    curves = epochs.merge(runs, on="run_id").query("epoch >= @first")
    curves = curves.groupby([*axes, "epoch"])["val_acc"].mean().mul(100).reset_index()
    table = pd.read_csv(tmp_path / "tables" / "plateau.csv").set_index(axes)
    rises = {}
    for key, cell in curves.groupby(axes):
        rises[key] = np.polyfit(cell["epoch"], cell["val_acc"], 1)[0] * (last - first)
        assert float(table.loc[key, "rise"]) == pytest.approx(rises[key], rel=1e-9, abs=1e-9), key
        assert bool(table.loc[key, "plateaued"]) == (rises[key] < points), key
    first_line = next(line for line in report_md.splitlines() if line.startswith("- "))
    if max(rises.values()) < points:
        assert "the models are trained to a plateau" in report_md
    else:
        assert first_line.startswith(("- **Under-trained**", "- **Plateau not shown**")), first_line
        assert "trained to a plateau" not in report_md


@pytest.mark.parametrize("study", STUDIES)
def test_the_published_main_effects_are_on_the_declared_scale(study):
    """In a balanced design a main effect is the mean of its level's cell means minus the reference's:
    the published estimates must be that, on the logit scale the studies declare by default."""
    frame, axes, scale = store_of(study)
    frame["y"] = special.logit((frame["acc"] / 100 * frame["m"] + 0.5) / (frame["m"] + 1)) if scale == "logit" \
        else frame["acc"]
    cells = frame.groupby(axes)["y"].mean().reset_index()
    effects = pd.read_csv(RESULTS / study / "tables" / "effects.csv", dtype={"level": str, "reference": str})
    mains = effects[effects["kind"] == "main effect"]
    assert len(mains) == sum(cells[a].nunique() - 1 for a in axes)
    for row in mains.itertuples():
        level = cells[cells[row.term] == _as_stored(cells[row.term], row.level)]["y"].mean()
        ref = cells[cells[row.term] == _as_stored(cells[row.term], row.reference)]["y"].mean()
        assert row.diff == pytest.approx(level - ref, rel=1e-9, abs=1e-12), (study, row.term, row.level)


def _as_stored(column: pd.Series, label: str) -> str:
    """A level as the report labels it ('0.001') -> as the config stores it ('0.001' or '1e-3' as str(float))."""
    return next((v for v in column.unique() if v == label or _float_equal(v, label)), label)


def _float_equal(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False
