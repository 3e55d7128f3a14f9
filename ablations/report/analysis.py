"""One verdict per effect, from the one test the design declares: the factorial model on the study's
scale with its covariance (`factorial.Factorial.covariance`), simultaneous within a family.

Every main effect (each level against the reference) and every interaction contrast is tested
two-sided; where that test does not reject, the two one-sided tests (TOST) against the effect's
equivalence margin decide between "equivalent within ±m" and "not resolved". A study without a
margin for a factor can find that it differs, never that it does not. An interaction's margin is
the smallest of its factors' margins: an interaction is negligible when it is smaller than any
main effect the study would call negligible.

Families: the main effects are one, the interactions another (they decide how the main effects
are read), the simple effects a third. Intervals are Bonferroni over the family, p-values and
TOST p-values Holm-adjusted over it. Effects are tested on the scale and shown in points at the
grand mean and as a relative change of the error rate (`scale`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablations.report import factorial as fm
from ablations.report import stats
from ablations.report.runs import cell_name
from ablations.report.scale import error_change, from_points, to_points

DIFFERS, NOT_RESOLVED = "differs", "not resolved"
MAIN, INTERACTION, SIMPLE = "main effect", "interaction", "simple effect"
ESTIMATE_COLUMNS = ["diff", "diff_ci_low", "diff_ci_high", "se", "df", "p", "p_holm", "family"]
VERDICT_COLUMNS = ["points", "points_ci_low", "points_ci_high", "error_change", "error_change_ci_low",
                   "error_change_ci_high", "margin", "p_tost", "verdict", "verdict_note"]


def equivalent(margin: float) -> str:
    return f"equivalent within ±{margin:g}"


def margin_of(term: str, margins: dict[str, float]) -> float:
    """A term's margin in points: its factor's, or for an interaction the smallest of its factors'."""
    found = [margins[f] for f in term.split(" x ") if f in margins]
    return min(found) if len(found) == len(term.split(" x ")) else math.nan


def judge(est: pd.DataFrame, margins: list[float], centre: float, scale: str) -> pd.DataFrame:
    """Add the points, the error change, the TOST and the verdict to one family of estimates (rows
    with diff, se, df, p_holm on `scale`). `margins` are in points, NaN where none is declared."""
    est = est.reset_index(drop=True).copy()
    for name, column in (("points", to_points), ("error_change", error_change)):
        ends = [[column(v, centre, scale) for v in est[c]] for c in ("diff", "diff_ci_low", "diff_ci_high")]
        est[name] = ends[0]
        est[f"{name}_ci_low"] = np.fmin(ends[1], ends[2])  # the error change falls as accuracy rises
        est[f"{name}_ci_high"] = np.fmax(ends[1], ends[2])
    est["margin"] = margins
    bounds = np.array([from_points(m, centre, scale) if math.isfinite(m) else math.nan for m in margins])
    d, se, df = (est[c].to_numpy(dtype=float) for c in ("diff", "se", "df"))
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = sps.t.sf((d + bounds) / se, df)  # H0: effect <= -margin
        upper = sps.t.cdf((d - bounds) / se, df)  # H0: effect >= +margin
    est["p_tost"] = stats.holm(np.fmax(lower, upper))
    verdicts = []
    for row in est.itertuples(index=False):
        if row.p_holm < stats.ALPHA:
            verdicts.append(DIFFERS)
        elif row.p_tost < stats.ALPHA:
            verdicts.append(equivalent(row.margin))
        else:
            verdicts.append(NOT_RESOLVED)
    est["verdict"] = verdicts
    est["verdict_note"] = [verdict_note(row) for row in est.to_dict("records")]
    return est


def verdict_note(row: dict) -> str:
    """Why a verdict and its simultaneous interval seem to disagree, where they do ('' elsewhere). The
    verdict comes from the declared tests (Holm's step-down, Holm-adjusted TOST); the interval is
    Bonferroni's over the whole family, which is stricter near the boundary."""
    low, high, margin = row["points_ci_low"], row["points_ci_high"], row["margin"]
    if row["verdict"] == DIFFERS and low <= 0 <= high:
        m = int(row["family"])
        return (f"the interval includes 0 though Holm's test rejects: after a smaller p is rejected Holm compares "
                f"this p with {stats.ALPHA:.0%} over fewer than {m} contrasts, the {fm.ADJUSTMENT} interval always over {m}; "
                f"the verdict follows the declared test")
    if row["verdict"] == equivalent(margin) and (low < -margin or high > margin):
        return (f"the interval reaches past the margin though the TOST shows equivalence: two one-sided tests at "
                f"{stats.ALPHA:.0%} match a narrower interval ({1 - 2 * stats.ALPHA:.0%} before adjustment) than this "
                f"two-sided {1 - stats.ALPHA:.0%} one; the verdict follows the declared test")
    return ""


def family(model: fm.Factorial, labels: list[dict], weights: list[fm.Weights], margins: list[float],
           covariance: str | None = None) -> pd.DataFrame:
    """One family of contrasts (cell weights) estimated by the model and judged."""
    if not labels:
        return pd.DataFrame(columns=[*ESTIMATE_COLUMNS, *VERDICT_COLUMNS])
    est = fm.estimate(model, fm.rows(model, weights), covariance=covariance)
    est = judge(est[ESTIMATE_COLUMNS], margins, model.centre, model.scale)
    return pd.concat([pd.DataFrame(labels), est], axis=1)


def contrasts(model: fm.Factorial) -> tuple[list[dict], list[fm.Weights]]:
    """Labels and cell weights of every main effect, then every interaction, in term order."""
    labels, vectors = [], []
    for f in model.factors:
        for level in model.levels(f)[1:]:
            labels.append({"kind": MAIN, "term": f, "level": level, "reference": model.reference[f]})
            vectors.append(fm.difference_weights(model, {f: level}, {f: model.reference[f]}))
    for order in range(2, len(model.factors) + 1):
        for term in itertools.combinations(model.factors, order):
            for combo in itertools.product(*(model.levels(f)[1:] for f in term)):
                labels.append({"kind": INTERACTION, "term": " x ".join(term), "level": " x ".join(combo),
                               "reference": " x ".join(model.reference[f] for f in term)})
                vectors.append(fm.interaction_weights(model, dict(zip(term, combo, strict=True))))
    return labels, vectors


def effects(model: fm.Factorial, margins: dict[str, float], covariance: str | None = None) -> pd.DataFrame:
    """Every main effect and interaction with its verdict: two families, main effects then interactions."""
    labels, vectors = contrasts(model)
    parts = []
    for kind in (MAIN, INTERACTION):
        keep = [i for i, lab in enumerate(labels) if lab["kind"] == kind]
        parts.append(family(model, [labels[i] for i in keep], [vectors[i] for i in keep],
                             [margin_of(labels[i]["term"], margins) for i in keep], covariance))
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def open_interactions(table: pd.DataFrame) -> list[tuple[str, ...]]:
    """Interactions not shown negligible (any contrast that differs or is not resolved): they keep
    their factors' main effects from being read alone."""
    rows = table[(table["kind"] == INTERACTION) & ~table["verdict"].str.startswith("equivalent")]
    return [tuple(t.split(" x ")) for t in dict.fromkeys(rows["term"])]


def simple_effects(model: fm.Factorial, interactions: list[tuple[str, ...]], margins: dict[str, float]) -> pd.DataFrame:
    """For each factor in an interaction not shown negligible: its effect (each level against the
    reference) within every combination of the factors it interacts with, averaged over the rest."""
    labels, vectors, bounds = [], [], []
    for f in model.factors:
        others = fm.qualifiers(f, interactions)
        if not others:
            continue
        ref = model.reference[f]
        for combo in itertools.product(*(model.levels(o) for o in others)):
            within = dict(zip(others, combo, strict=True))
            for level in model.levels(f)[1:]:
                labels.append({"kind": SIMPLE, "term": f, "level": level, "reference": ref,
                               "within": cell_name(within)})
                vectors.append(fm.difference_weights(model, {f: level, **within}, {f: ref, **within}))
                bounds.append(margins.get(f, math.nan))
    return family(model, labels, vectors, bounds)


def vs_baseline(model: fm.Factorial, cells: pd.DataFrame, keys: list[str], base: dict[str, str]) -> pd.DataFrame:
    """Every other cell against the baseline cell, from the model, in points at the grand mean."""
    labels, vectors = [], []
    for row in cells[cells["n"] > 0].itertuples(index=False):
        cell = {k: str(getattr(row, k)) for k in keys}
        if cell == base:
            continue
        labels.append({**cell, "n": row.n, "test_acc": row.test_acc})
        vectors.append(fm.difference_weights(model, cell, base))
    table = family(model, labels, vectors, [math.nan] * len(labels))
    return table.drop(columns=["margin", "p_tost"], errors="ignore")
