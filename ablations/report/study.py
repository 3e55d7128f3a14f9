"""A grid's runs analysed: every table by file name, the baseline, and the model's verdicts.

`analyse` is the one place that decides what is computed; tables, figures and the page only
read the `Study` it returns. What it computes follows the grid's declared analysis
(`[analysis]`, or its defaults): the endpoint, the scale the verdicts are tested on, the
equivalence margins and the plateau.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ablations.grid.spec import Analysis
from ablations.report import analysis, curves, factorial
from ablations.report.budget import Training, describe_hardware, hardware_of, machines, mixed_hardware, training_state
from ablations.report.notebook import notebook_table
from ablations.report.paired import improvement, pairing
from ablations.report.power import seeds_needed
from ablations.report.runs import Runs, baseline_cell
from ablations.report.scale import LOGIT, POINTS, to_scale
from ablations.report.sensitivity import sensitivity
from ablations.report.tables import cell_table, interaction_tables, leaderboard, problem_runs, status_table

RESPONSE_NAMES = {"test_acc": "test acc", "val_acc": "val acc", "best_val_acc": "best val acc"}


@dataclass
class Study:
    """What the page says about a grid: its runs, the tables by file name, the verdicts."""

    runs: Runs
    tables: dict[str, pd.DataFrame]
    baseline: dict[str, str]
    baseline_found: bool  # False: the default baseline was not in the store, the first cell stood in
    target: float  # validation accuracy (fraction) for "epochs to target"
    model: factorial.Factorial | None  # on the declared scale; None: `model_note` says why
    model_note: str = ""
    open_interactions: list[tuple[str, ...]] = field(default_factory=list)  # not shown negligible
    training: Training | None = None

    @property
    def plan(self) -> Analysis:
        return self.runs.plan


def model_frame(r: Runs, scale: str) -> pd.DataFrame:
    """The done runs with the endpoint on `scale` as the model's response."""
    response, images = r.endpoint
    done = r.done
    return done.assign(**{factorial.RESPONSE: to_scale(done[response], done[images], scale)})


def machines_of_done(r: Runs) -> pd.Series | None:
    """Each done run's hardware, where the runs come from more than one (device, precision, CPU capability)."""
    if not mixed_hardware(r):
        return None
    combos = [hardware_of(p or {}) for p in r.done["provenance"]]
    # the device's name where it tells the machines apart, else the whole description
    by_name = len({c[0] for c in combos}) == len(set(combos))
    return pd.Series([c[0] if by_name else describe_hardware(c) for c in combos], index=r.done.index)


def fit(r: Runs, base: dict[str, str], scale: str) -> factorial.Factorial | str:
    name = RESPONSE_NAMES[r.endpoint[0]]
    return factorial.fit(model_frame(r, scale), r.axes, base, scale=scale, response=name)


def analyse(r: Runs, baseline: dict[str, Any] | None, target: float) -> Study:
    """Every table of a grid, against the baseline cell, from one factorial model where it can be fitted."""
    base, found = baseline_cell(r, baseline)
    plan = r.plan
    cells = cell_table(r, target)
    fitted = fit(r, base, plan.scale)
    model = fitted if isinstance(fitted, factorial.Factorial) else None
    other = fit(r, base, POINTS if plan.scale == LOGIT else LOGIT) if model is not None else None
    other = other if isinstance(other, factorial.Factorial) else None
    points_model = model if plan.scale == POINTS else other
    tables: dict[str, pd.DataFrame] = {"status": status_table(r), "problem_runs": problem_runs(r), "cells": cells,
                                       "machines": machines(r)}
    open_: list[tuple[str, ...]] = []
    if model is not None:
        tables["anova"] = factorial.anova(model)
        tables["effects"] = analysis.effects(model, plan.margins)
        open_ = analysis.open_interactions(tables["effects"])
        tables["simple_effects"] = analysis.simple_effects(model, open_, plan.margins)
        tables["sensitivity"] = sensitivity(model, other, tables["effects"], plan.margins, machines_of_done(r))
        tables["improvement"] = improvement(model)
        tables["vs_baseline"] = analysis.vs_baseline(model, cells, r.keys, base)
    tables["pairing"] = pairing(r.done, r.axes, r.endpoint[0])
    tables["seeds_needed"] = seeds_needed(cells, r.keys, points_model)
    tables["plateau"] = curves.plateau(r, plan.plateau_points)
    tables["budgets"] = curves.budgets(r, tables["plateau"], plan.plateau_points)
    tables["val_curves"] = curves.val_curves(r)
    tables["effect_by_epoch"] = curves.effect_by_epoch(r, base, plan.scale)
    tables.update(interaction_tables(r))
    tables["leaderboard"] = leaderboard(cells, r.keys)
    training = training_state(r, tables["plateau"], plan.plateau_points)
    note = "" if model is not None else str(fitted)
    study = Study(r, tables, base, found, target, model, note, open_, training)
    tables["notebook"] = notebook_table(r, tables, note)
    return study
