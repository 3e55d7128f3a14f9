"""A grid's runs analysed: every table by file name, the baseline, and the model's verdicts.

`analyse` is the one place that decides what is computed; tables, figures and the page only
read the `Study` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ablations.report import analysis, factorial
from ablations.report.reading import notebook_table
from ablations.report.runs import Runs, baseline_cell
from ablations.report.tables import cell_table, interaction_tables, leaderboard, problem_runs, status_table

if TYPE_CHECKING:  # the page only reads figure records; plotting libraries load where figures are drawn
    from ablations.report.figures import Figure


@dataclass
class Study:
    """What the page says about a grid: its runs, the tables by file name, the figures."""

    runs: Runs
    tables: dict[str, pd.DataFrame]
    baseline: dict[str, str]
    baseline_found: bool  # False: the default baseline was not in the store, the first cell stood in
    target: float  # validation accuracy (fraction) for "epochs to target"
    model: factorial.Factorial | None  # None: the store cannot support the model; `model_note` says why
    model_note: str = ""
    interactions: list[tuple[str, ...]] = field(default_factory=list)  # those whose robust test rejects
    figures: list[Figure] = field(default_factory=list)


def analyse(r: Runs, baseline: dict[str, Any] | None, target: float) -> Study:
    """Every table of a grid, against the baseline cell, from one factorial model where it can be fitted."""
    base, found = baseline_cell(r, baseline)
    cells = cell_table(r, target)
    fitted = factorial.fit(r.done, r.axes, base)
    model = fitted if isinstance(fitted, factorial.Factorial) else None
    tables: dict[str, pd.DataFrame] = {"status": status_table(r), "problem_runs": problem_runs(r), "cells": cells}
    interactions: list[tuple[str, ...]] = []
    if model is not None:
        tables["anova"] = factorial.anova(model)
        interactions = factorial.holding_interactions(tables["anova"])
        tables["main_effects"] = analysis.main_effects(model, interactions)
        tables["simple_effects"] = analysis.simple_effects(model, interactions)
        tables["vs_baseline"] = analysis.vs_baseline(model, cells, r.keys, base)
    tables["pairing"] = analysis.pairing(r.done, r.axes)
    tables["seeds_needed"] = analysis.seeds_needed(cells, r.keys, model)
    tables.update(interaction_tables(r))
    tables["leaderboard"] = leaderboard(cells, r.keys)
    note = "" if model is not None else str(fitted)
    study = Study(r, tables, base, found, target, model, note, interactions)
    tables["notebook"] = notebook_table(study)  # reads the other tables
    return study
