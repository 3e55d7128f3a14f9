"""The reading of REPORT.md: the answer in at most ten short lines (`answer`), and the full reading
below it (`reading`): what the study can support first (budget, training state, hardware), then what
the model finds (interactions, then effects), then the checks that might change it.

Every sentence is built from a table row, so the page cannot claim more than the store holds.
"""

from __future__ import annotations

import math

import pandas as pd

from ablations.config import Status
from ablations.report import curves, sentences
from ablations.report.analysis import DIFFERS, INTERACTION, MAIN, NOT_RESOLVED
from ablations.report.budget import (
    budget_sentence,
    caveat,
    hardware,
    seeds_per_cell,
    training_budget,
    training_sentence,
)
from ablations.report.factorial import HC3, HC3_MIN_SEEDS
from ablations.report.power import SEEDS_COLUMNS
from ablations.report.runs import cell_name
from ablations.report.scale import describe
from ablations.report.stats import POWER
from ablations.report.study import Study
from ablations.report.words import join, plural

MAX_ANSWER = 10  # lines above the fold


# ---- the answer ----------------------------------------------------------------------------
def answer(s: Study) -> list[str]:
    """At most ten short lines: a budget pilot's answer first (the smallest budget at which every cell
    plateaued), the budget caveat when under-trained, one line per factor
    with its verdict, one for the interactions, then what the verdicts rest on."""
    pilot = s.tables.get("budgets", pd.DataFrame())
    out = [pilot_line(pilot)] if len(pilot) else []  # a budget pilot exists to answer this one question
    if s.training is not None and s.training.under_trained:
        out.append(caveat(s.training))
    if s.model is None:
        return out + [f"No verdicts: {s.model_note or 'no run is done'}."]
    effects = s.tables["effects"]
    for axis in s.model.factors:
        out.append(_factor_line(s, axis, effects[(effects["kind"] == MAIN) & (effects["term"] == axis)]))
    inter = effects[effects["kind"] == INTERACTION]
    if len(inter):
        out.append(_interaction_line(inter))
    out.append(_design_line(s))
    flips = _disagreements(s.tables["sensitivity"])
    out.append(f"Sensitivity: {flips}." if flips else "Sensitivity: no other scale, covariance, seed-level test or "
               "left-out run changes a verdict.")
    return out[:MAX_ANSWER]


def _factor_line(s: Study, axis: str, rows: pd.DataFrame) -> str:
    """A factor read alone where its interactions are shown negligible; otherwise the range of its
    effects within the levels of the factors it interacts with, and how many of them differ."""
    qualified = sorted({f for term in s.open_interactions if axis in term for f in term if f != axis})
    if not qualified:
        return f"**{axis}** " + "; ".join(sentences.effect(r, detail=False) for _, r in rows.iterrows()) + "."
    simple = s.tables["simple_effects"]
    parts = []
    for level, part in simple[simple["term"] == axis].groupby("level", sort=False):
        counts = part["verdict"].value_counts()
        verdicts = ", ".join(f"{v} in {n}" for v, n in counts.items())
        parts.append(f"`{level}` vs `{part['reference'].iloc[0]}` {part['points'].min():+.2f} to "
                     f"{part['points'].max():+.2f} points over {plural(len(part), 'combination')}: {verdicts}")
    return (f"**{axis}** per level of {join(qualified)} (an interaction with {'them' if len(qualified) > 1 else 'it'} "
            f"is not shown negligible): " + "; ".join(parts) + " (Simple effects).")


def _interaction_line(inter: pd.DataFrame) -> str:
    worst = {}
    for term, rows in inter.groupby("term", sort=False):
        verdicts = set(rows["verdict"])
        worst[term] = DIFFERS if DIFFERS in verdicts else NOT_RESOLVED if NOT_RESOLVED in verdicts else \
            rows["verdict"].iloc[0]
    by_verdict: dict[str, list[str]] = {}
    for term, verdict in worst.items():
        by_verdict.setdefault(verdict, []).append(f"`{term}`")
    return "Interactions: " + "; ".join(f"{join(terms)} {verdict}" for verdict, terms in by_verdict.items()) + "."


def _design_line(s: Study) -> str:
    m = s.model
    cov = ("HC3" if m.covariance == HC3 else
           f"classical (a robust HC3 test needs {HC3_MIN_SEEDS} seeds per cell; this design is too small for one)")
    margins = ", ".join(f"{k} ±{v:g}" for k, v in s.plan.margins.items()) or "none declared (so nothing can be "\
        "called equivalent)"
    return (f"{plural(len(s.runs.done), 'run')}, {seeds_per_cell(s.tables['cells'])}, on {hardware(s.runs)[0]}. "
            f"Verdicts: OLS on {'the logit scale' if m.scale == 'logit' else 'raw points'}, {cov}; margins (points): "
            f"{margins}.")


def _disagreements(table: pd.DataFrame) -> str:
    """'`weight_decay` `0.001`: points scale says differs; without ...' for every row that disagrees."""
    rows = table[~table["agrees"].astype(bool)]
    parts = [f"`{r['term']}` `{r['level']}` by {r['method']}: {r['verdict']}" for _, r in rows.iterrows()]
    return "; ".join(parts[:4]) + (f"; and {plural(len(parts) - 4, 'more row')}" if len(parts) > 4 else "")


def pilot_line(pilot: pd.DataFrame) -> str:
    smallest = curves.smallest_budget(pilot)
    per = "; ".join(f"{r['budget']} epochs: {r['plateaued_cells']} of {plural(r['cells'], 'cell')} plateaued"
                    + (f", {r['rising_cells']} shown still rising" if r["rising_cells"] else "")
                    + (f" ({plural(r['runs_pending'], 'run')} to finish)" if r["runs_pending"] else "")
                    for _, r in pilot.iterrows())
    tail = (f"the smallest budget at which every cell plateaued is {smallest} epochs" if smallest else
            "no budget tried let every cell plateau" if not pilot["runs_pending"].any() else
            "no budget has yet shown every cell plateaued")
    return f"Budget pilot (validation only): {per}; {tail}."


# ---- the full reading ----------------------------------------------------------------------
def reading(s: Study) -> list[str]:
    """The full reading, one sentence or a few per list item."""
    r, t = s.runs, s.tables
    out = [budget_sentence(training_budget(r))]
    if s.training is not None:
        out.append(training_sentence(s.training))
    warning = hardware(r)[1]
    if warning:
        out.append(warning)
    done = len(r.done)
    out.append(f"{done} of {plural(len(r.runs), 'run')} are done ({seeds_per_cell(t['cells'])})"
               f"{'; statistics use those.' if done else '.'} {_problems(t['problem_runs'])}")
    if done == 0:
        return out + ["No run is done yet: nothing to compare."]
    if t["cells"]["n"].max() <= 1:
        out.append("One seed per cell: no intervals. Per-cell std, confidence intervals and tests need two or more "
                   "seeds per cell (run the grid with `--seeds 3`).")
    if not s.baseline_found:
        out.append(f"The default baseline cell is not in the store; {cell_name(s.baseline)} stands in.")
    if s.model is None:
        out.append(f"No factorial model: {s.model_note}.")
    else:
        out += _model_sentences(s) + _effect_sentences(s) + _improvement(t["improvement"])
    out += _budget_curve(s) + _power(t["seeds_needed"])
    out.append(_fastest(t["cells"], r.keys, f"{s.target:.0%}"))
    return out


def _model_sentences(s: Study) -> list[str]:
    m = s.model
    declared = "declared by the grid" if s.plan.declared else "the default, as the grid declares no [analysis]"
    out = [f"Primary analysis, {declared}: `{m.formula}`, Type II, the response on {describe(m.scale)}. One verdict "
           f"per effect from this model: differs (two-sided test, Holm-adjusted within its family), else equivalent "
           f"within its margin (TOST, Holm-adjusted), else not resolved."]
    if m.covariance == HC3:
        out.append(f"Every cell has at least {HC3_MIN_SEEDS} seeds, so the verdicts use HC3 standard errors (robust to "
                   "cells that spread differently); the classical test is a sensitivity row.")
    else:
        out.append(f"Cells have as few as {plural(m.replicates, 'seed')}: HC3 estimates each cell's variance from its "
                   f"own residuals, which needs at least {HC3_MIN_SEEDS} seeds per cell to be stable, so this design "
                   "is too small for a robust test; the verdicts use the classical one and HC3 is a sensitivity row.")
    return out


def _effect_sentences(s: Study) -> list[str]:
    effects = s.tables["effects"]
    out = []
    for kind in (INTERACTION, MAIN):
        for _, row in effects[effects["kind"] == kind].iterrows():
            out.append(f"{'Interaction' if kind == INTERACTION else 'Main effect of'} `{row['term']}`, "
                       f"{sentences.effect(row)} ({sentences.family_note(row)}).")
    simple = s.tables["simple_effects"]
    for _, row in simple.iterrows():
        out.append(f"Simple effect of `{row['term']}` within {row['within']}: {sentences.effect(row)} "
                   f"({sentences.family_note(row)}).")
    flips = _disagreements(s.tables["sensitivity"])
    if flips:
        out.append(f"These verdicts depend on the analysis: {flips}. The primary row stands, as declared; the "
                   "sensitivity table gives every row.")
    notes = s.tables["sensitivity"]
    noted = notes[notes["note"].astype(bool) & ~notes["method"].str.startswith("leave")]
    if len(noted):
        methods = join(sorted(set(noted["method"])))
        out.append(f"Intervals that differ from the primary one by more than chance ({methods}) carry a note in the "
                   "sensitivity table saying why.")
    return out


def _improvement(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    parts = [f"`{r['level']}` over `{r['reference']}` {r['p_improve']:.2f}" +
             (f" ({r['p_improve_ci_low']:.2f} to {r['p_improve_ci_high']:.2f})"
              if math.isfinite(r["p_improve_ci_low"]) else "") for _, r in table.iterrows()]
    seeds = int(table["seeds"].iloc[0])
    return [f"Probability of improvement P(A > B), over runs matched on seed and the other axes, with a bootstrap "
            f"interval over {plural(seeds, 'seed')}: " + "; ".join(parts) + "."]


def _budget_curve(s: Study) -> list[str]:
    by_epoch = s.tables.get("effect_by_epoch", pd.DataFrame())
    if by_epoch.empty:
        return []
    out = []
    margin = s.plan.margins.get("augment", math.nan)
    target = f"within ±{margin:g} points" if math.isfinite(margin) else "an interval holding 0"
    groups = by_epoch.groupby("budget", sort=False) if "budget" in by_epoch else [(None, by_epoch)]
    for budget, part in groups:
        where = f" of the {budget}-epoch budget" if budget is not None else ""
        for level in dict.fromkeys(part.loc[part["axis"] == "augment", "level"]):
            epoch = curves.closes(part, "augment", level, margin)
            out.append(f"The `{level}` augmentation gap on validation accuracy closes to {target} from epoch "
                       f"{epoch}{where} on." if epoch is not None else
                       f"The `{level}` augmentation gap on validation accuracy does not close to {target} by the "
                       f"last epoch{where}.")
    if "schedule" in set(by_epoch["axis"]):
        out.append("A step schedule's effect is only defined at the end of its own schedule: before its decay it is "
                   "the constant schedule, and between the decay and the last epoch it has not finished.")
    return out


def _power(seeds: pd.DataFrame) -> list[str]:
    if seeds.empty:
        return []
    parts = [f"{_seeds(r[SEEDS_COLUMNS[1.0]])} per cell with {r['design']} ({r['spread']}, std {r['std']:.2f})"
             for _, r in seeds.iterrows()]
    return [f"To detect 1 point between two cells at {POWER:.0%} power (alpha 0.05): " + "; ".join(parts) + "."]


def _seeds(n: float) -> str:
    return "–" if math.isnan(n) else "more than 10,000 seeds" if math.isinf(n) else plural(int(n), "seed")


def _fastest(cells: pd.DataFrame, keys: list[str], target: str) -> str:
    """The cell whose every seed reached the validation target soonest; partial cells are only counted."""
    cells = cells[cells["n"] > 0]
    if cells["best_val_acc"].isna().all() and cells["reached"].sum() == 0:
        return f"Epochs to {target} validation accuracy: this store has no validation records."
    every = cells[cells["reached"] == cells["n"]]
    never = int((cells["reached"] == 0).sum())
    some = len(cells) - len(every) - never
    tail = (f"{never} of {plural(len(cells), 'cell')} never reached it"
            + (f", {plural(some, 'cell')} only in some seeds" if some else ""))
    if every.empty:
        return f"No cell reached {target} validation accuracy in every seed; {tail}."
    fast = every.sort_values("epochs_to_target", kind="stable").iloc[0]
    return (f"Fastest to {target} validation accuracy in every seed: {cell_name({k: fast[k] for k in keys})}, after "
            f"{plural(fast['epochs_to_target'], 'epoch')} on average; {tail}.")


def _problems(problems: pd.DataFrame) -> str:
    if problems.empty:
        return "No run failed or diverged."
    counts = problems["status"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in (Status.DIVERGED, Status.FAILED)]
    return f"{' and '.join(parts)} (listed under Status)."

