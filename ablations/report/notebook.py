"""The notebook's claims beside what the study finds, and the conditions that bound each finding:
one row per axis the notebook speaks of."""

from __future__ import annotations

import math

import pandas as pd

from ablations.config import Status
from ablations.report import sentences
from ablations.report.budget import seeds_per_cell, spread, training_budget
from ablations.report.runs import Runs, label

# What the notebook says about each studied axis, and the level it speaks of.
NOTEBOOK_CLAIMS = {
    "augment": ("notebook", "Augmentation makes training harder, yet test accuracy is high after a few epochs; "
                            "MNIST is too easy to show its effect."),
    "weight_decay": ("0.001", "Weight decay 1e-3 (an L2 penalty) regularizes the model."),
    "schedule": ("step", "Decaying the learning rate 0.1 -> 0.01 at epoch 15 of 20 helps; train fully before "
                         "decaying."),
}


def notebook_table(r: Runs, tables: dict[str, pd.DataFrame], model_note: str) -> pd.DataFrame:
    """'the notebook says / this study finds / under these conditions', one row per claim."""
    b = training_budget(r)
    configs = r.runs["config"]
    precision = ", ".join(sorted({str(p.get("precision") or "unknown") for p in r.done["provenance"]})) or "unknown"
    conditions = (f"{_distinct(c.get('dataset') for c in configs)}, {_distinct(c.get('model') for c in configs)}, "
                  f"{spread(b.epochs)} epochs = {spread(b.steps)} steps "
                  f"({spread(tuple(100 * x for x in b.notebook_share), '.1f')}% of the notebook's images), "
                  f"{seeds_per_cell(tables['cells'])}, precision {precision}")
    rows = [{"axis": axis, "notebook_says": claim, "study_finds": _finding(r, tables, model_note, axis, level),
             "conditions": conditions} for axis, (level, claim) in NOTEBOOK_CLAIMS.items()]
    return pd.DataFrame(rows)


def _finding(r: Runs, tables: dict[str, pd.DataFrame], model_note: str, axis: str, level: str) -> str:
    if axis not in r.axes:
        return f"not studied: {axis} is fixed at {label(r.fixed[axis]) if axis in r.fixed else 'its default'}"
    if "effects" not in tables:
        return f"no model: {model_note}"
    effects = tables["effects"]
    part = effects[(effects["kind"] == "main effect") & (effects["term"] == axis)]
    chosen = part[part["level"] == level]
    row = (chosen if len(chosen) else part).iloc[0]
    text = f"{sentences.effect(row)} on final {r.endpoint[0].replace('_acc', '')} accuracy"
    simple = tables.get("simple_effects", pd.DataFrame())
    within = simple[(simple["term"] == axis) & (simple["level"] == row["level"])] if len(simple) else simple
    if len(within):
        text += "; read per level, as an interaction is not shown negligible: " + "; ".join(
            f"{w['within']}: {sentences.points(w)}, {w['verdict']}" for _, w in within.iterrows())
    if axis == "augment":
        train = r.done.groupby("augment", observed=True)["train_acc"].mean()
        first = r.epochs[(r.epochs["status"] == Status.DONE) & (r.epochs["epoch"] == 1)]
        early = first.groupby("augment", observed=True)["val_acc"].mean()
        text += (f"; final train accuracy {train.get(row['level'], math.nan):.2f}% vs "
                 f"{train.get(row['reference'], math.nan):.2f}%")
        if early.notna().any():
            text += (f"; validation accuracy after epoch 1 {early.get(row['level'], math.nan):.2f}% vs "
                     f"{early.get(row['reference'], math.nan):.2f}%")
    return text


def _distinct(values) -> str:
    return ", ".join(sorted({str(v) for v in values if v is not None})) or "unknown"
