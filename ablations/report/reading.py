"""The reading of REPORT.md: what the study can support first (budget, training state, hardware),
then what the model finds (interactions, then effects), then the notebook's claims beside them.

Every sentence is built from a table row, so the page cannot claim more than the store holds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from ablations.config import Status
from ablations.report.budget import (
    budget_sentence,
    hardware,
    seeds_per_cell,
    spread,
    training_budget,
    training_sentence,
    training_state,
)
from ablations.report.factorial import ADJUSTMENT
from ablations.report.runs import cell_name, label
from ablations.report.stats import LEVEL, POWER

if TYPE_CHECKING:
    from ablations.report.study import Study

PERCENT = f"{LEVEL:.0%}"
# What the notebook says about each studied axis, and the level it speaks of.
NOTEBOOK_CLAIMS = {
    "augment": ("notebook", "Augmentation makes training harder, yet test accuracy is high after a few epochs; "
                            "MNIST is too easy to show its effect."),
    "weight_decay": ("0.001", "Weight decay 1e-3 (an L2 penalty) regularizes the model."),
    "schedule": ("step", "Decaying the learning rate 0.1 -> 0.01 at epoch 15 of 20 helps; train fully before "
                         "decaying."),
}


def reading(s: Study) -> list[str]:
    """The page's reading, one sentence per list item."""
    r, t = s.runs, s.tables
    out = [budget_sentence(training_budget(r))]
    state = training_state(r)
    if state is not None:
        out.append(training_sentence(state))
    warning = hardware(r)[1]
    if warning:
        out.append(warning)
    done = len(r.done)
    out.append(f"{done} of {len(r.runs)} runs are done ({seeds_per_cell(t['cells'])})"
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
        out += _interaction_sentences(s) + _effect_sentences(s) + _best_cell(s)
    out += _pairing_sentences(t["pairing"]) + _power_sentences(t["seeds_needed"])
    if "augment" in r.axes:
        gaps = r.done.groupby("augment", observed=True, sort=True)["gap"].mean()
        out.append("Mean train − test accuracy gap by augmentation: "
                   + ", ".join(f"`{k}` {v:+.2f} points" for k, v in gaps.items()) + ".")
    out.append(_fastest(t["cells"], r.keys, f"{s.target:.0%}"))
    return out


# ---- findings of the model ---------------------------------------------------------------
def _interval(row: pd.Series) -> str:
    """'-3.15 points (simultaneous 95% CI -3.4 to -2.9, Bonferroni over m; Holm p = 0.001)'."""
    holm = _p(row["p_holm"])
    return (f"{row['diff']:+.2f} points (simultaneous {PERCENT} CI {row['diff_ci_low']:+.2f} to "
            f"{row['diff_ci_high']:+.2f}, {ADJUSTMENT} over {int(row['family'])}; Holm-adjusted {holm})")


def _interaction_sentences(s: Study) -> list[str]:
    anova = s.tables["anova"]
    terms = anova[anova["term"].str.contains(" x ")]
    if terms.empty:
        return []
    if not s.interactions:
        return ["No interaction holds (robust HC3 p ≥ 0.05 for every interaction term): within this study's "
                "precision the axes add up, and the main effects below can be read alone."]
    out = []
    simple = s.tables["simple_effects"]
    for term in s.interactions:
        row = anova[anova["term"] == " x ".join(term)].iloc[0]
        out.append(f"Interaction `{' x '.join(term)}` holds: HC3 F = {row['F_hc3']:.2f}, {_p(row['p_hc3'])} "
                   f"(classical F = {row['F']:.2f}, {_p(row['p'])}; partial eta² = {row['partial_eta_sq']:.2f}). "
                   "So each of its axes has effects that depend on the others:")
        for factor in term:
            part = simple[simple["axis"] == factor]
            listed = "; ".join(f"within {r['within']}: `{r['level']}` vs `{r['reference']}` {_interval(r)}"
                               for _, r in part.iterrows())
            if listed:
                out.append(f"Simple effects of `{factor}`: {listed}.")
    return out


def _effect_sentences(s: Study) -> list[str]:
    effects = s.tables["main_effects"]
    out = []
    for axis in s.runs.axes:
        part = effects[(effects["axis"] == axis) & (effects["level"] != effects["reference"])]
        for _, row in part.iterrows():
            verdict = "changes" if row["significant"] else "does not significantly change"
            line = (f"`{axis}` = `{row['level']}` against `{row['reference']}` {verdict} final test accuracy, "
                    f"averaged over the other axes: {_interval(row)}")
            if row["qualified_by"]:
                line += (f". Qualified by its interaction with {row['qualified_by']}: this average hides effects "
                         "that differ between their levels (simple effects above)")
            out.append(line + ".")
    return out


def _best_cell(s: Study) -> list[str]:
    board, diffs, keys = s.tables["leaderboard"], s.tables["vs_baseline"], s.runs.keys
    if board.empty:
        return []
    best = board.iloc[0]
    cell = {k: best[k] for k in keys}
    line = f"Best cell: {cell_name(cell)}, {best['test_acc']:.2f}% final test accuracy (n = {int(best['n'])})"
    match = diffs
    for k in keys:
        match = match[match[k].astype(str) == str(best[k])]
    if len(match):
        d = match.iloc[0]
        line += f"; against the baseline {cell_name(s.baseline)}: {_interval(d)}"
    elif {k: str(v) for k, v in cell.items()} == s.baseline:
        line += "; it is the baseline cell"
    return [line + "."]


def _pairing_sentences(pairing: pd.DataFrame) -> list[str]:
    rows = pairing.dropna(subset=["width_ratio"])
    if rows.empty:
        return []
    parts = [f"`{r['axis']}` {r['paired_width']:.2f} vs {r['unpaired_width']:.2f} points wide "
             f"({r['width_ratio']:.2f}×, {int(r['seeds'])} seeds)" for _, r in rows.iterrows()]
    return ["What pairing by seed buys (paired vs unpaired Welch interval of the same runs): " + "; ".join(parts) + "."]


def _power_sentences(seeds: pd.DataFrame) -> list[str]:
    if seeds.empty:
        return []
    parts = [f"{_seeds(r['seeds_for_1'])} seeds per cell {r['design']} ({r['spread']}, std {r['std']:.2f})"
             for _, r in seeds.iterrows()]
    return [f"To detect 1 point between two cells at {POWER:.0%} power (alpha 0.05): " + "; ".join(parts) + "."]


def _seeds(n: float) -> str:
    return "–" if math.isnan(n) else "more than 10,000" if math.isinf(n) else f"{int(n)}"


def _fastest(cells: pd.DataFrame, keys: list[str], target: str) -> str:
    """The cell whose every seed reached the validation target soonest; partial cells are only counted."""
    cells = cells[cells["n"] > 0]
    if cells["best_val_acc"].isna().all() and cells["reached"].sum() == 0:
        return f"Epochs to {target} validation accuracy: this store has no validation records."
    every = cells[cells["reached"] == cells["n"]]
    never = int((cells["reached"] == 0).sum())
    some = len(cells) - len(every) - never
    tail = f"{never} of {len(cells)} cells never reached it" + (f", {some} only in some seeds" if some else "")
    if every.empty:
        return f"No cell reached {target} validation accuracy in every seed; {tail}."
    fast = every.sort_values("epochs_to_target", kind="stable").iloc[0]
    return (f"Fastest to {target} validation accuracy in every seed: {cell_name({k: fast[k] for k in keys})}, after "
            f"{fast['epochs_to_target']:.1f} epochs on average; {tail}.")


def _problems(problems: pd.DataFrame) -> str:
    counts = problems["status"].value_counts()
    if problems.empty:
        return "No run failed or diverged."
    parts = [f"{counts.get(s, 0)} {s}" for s in (Status.DIVERGED, Status.FAILED)]
    return f"{' and '.join(parts)} (listed under Status)."


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---- the notebook's claims ---------------------------------------------------------------
def notebook_table(s: Study) -> pd.DataFrame:
    """'the notebook says / this study finds / under these conditions', one row per studied axis."""
    r = s.runs
    b = training_budget(r)
    configs = r.runs["config"]
    precision = ", ".join(sorted({str(p.get("precision") or "unknown") for p in r.done["provenance"]})) or "unknown"
    conditions = (f"{_distinct(c.get('dataset') for c in configs)}, {_distinct(c.get('model') for c in configs)}, "
                  f"{spread(b.epochs)} epochs = {spread(b.steps)} steps "
                  f"({spread(tuple(100 * x for x in b.notebook_share), '.1f')}% of the notebook's images), "
                  f"{seeds_per_cell(s.tables['cells'])}, precision {precision}")
    rows = []
    for axis, (level, claim) in NOTEBOOK_CLAIMS.items():
        rows.append({"axis": axis, "notebook_says": claim, "study_finds": _finding(s, axis, level),
                     "conditions": conditions})
    return pd.DataFrame(rows)


def _finding(s: Study, axis: str, level: str) -> str:
    r = s.runs
    if axis not in r.axes:
        return f"not studied: {axis} is fixed at {label(r.fixed[axis]) if axis in r.fixed else 'its default'}"
    if s.model is None:
        return f"no model: {s.model_note}"
    effects = s.tables["main_effects"]
    part = effects[(effects["axis"] == axis) & (effects["level"] != effects["reference"])]
    chosen = part[part["level"] == level]
    row = (chosen if len(chosen) else part).iloc[0]
    text = f"`{row['level']}` vs `{row['reference']}`: {_interval(row)} on final test accuracy"
    if row["qualified_by"]:
        simple = s.tables["simple_effects"]
        within = simple[(simple["axis"] == axis) & (simple["level"] == row["level"])]
        text += "; depends on " + row["qualified_by"] + ": " + "; ".join(
            f"{w['within']}: {w['diff']:+.2f}" for _, w in within.iterrows())
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
