"""The seed as the unit: runs that share a seed share their initial weights, data order and
augmentation draws, so a contrast computed within each seed and then compared across seeds needs
no model of how the cells' spreads differ.

- `seed_unit`: each contrast of the model (the same cell weights) evaluated per seed, and a
  one-sample t test over the seeds: a sensitivity row beside the model's verdict.
- `improvement`: P(A > B), the share of seed-matched pairs of runs in which a level beats the
  reference (ties count half), with a seeded bootstrap interval over the seeds.
- `pairing`: what pairing buys, the paired interval beside the unpaired Welch one of the same numbers.

Only seeds with a done run in every cell count, so every row uses the same runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablations.report import factorial as fm
from ablations.report import stats
from ablations.report.factorial import RESPONSE

BOOTSTRAP = 2000  # resamples of the seeds for the percentile interval
BOOTSTRAP_SEED = 20240601  # fixed: the same store gives the same interval


def per_seed(model: fm.Factorial) -> pd.DataFrame:
    """y per seed (rows) and cell (columns: level tuples in factor order), complete seeds only."""
    table = model.data.pivot_table(index="seed", columns=list(model.factors), values=RESPONSE, aggfunc="mean",
                                   observed=True)
    table.columns = [c if isinstance(c, tuple) else (c,) for c in table.columns]
    return table.dropna()


def seed_unit(model: fm.Factorial, weights: list[fm.Weights]) -> pd.DataFrame:
    """Each contrast per seed, then a t test over seeds: one family (Bonferroni intervals, Holm p),
    with the columns `factorial.estimate` gives."""
    table = per_seed(model)
    values = np.array([[sum(w.get(c, 0.0) * row[c] for c in table.columns) for w in weights]
                       for _, row in table.iterrows()]).reshape(len(table), len(weights))
    m, n = len(weights), len(table)
    rows = []
    for j in range(m):
        d = values[:, j]
        mean = float(d.mean()) if n else math.nan
        se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        df = n - 1.0
        if n > 1 and se > 0:
            half = float(sps.t.ppf(1 - stats.ALPHA / (2 * m), df)) * se
            p = float(2 * sps.t.sf(abs(mean) / se, df))
        else:
            half, p = math.nan, math.nan
        rows.append({"diff": mean, "se": se, "df": df, "p": p, "diff_ci_low": mean - half, "diff_ci_high": mean + half})
    frame = pd.DataFrame(rows, columns=["diff", "se", "df", "p", "diff_ci_low", "diff_ci_high"])
    frame["p_holm"] = stats.holm(frame["p"].to_numpy())
    frame["family"] = m
    return frame


def improvement(model: fm.Factorial) -> pd.DataFrame:
    """P(level > reference) per factor and level, over pairs of runs matched on the seed and on
    every other factor's level; a percentile bootstrap interval resampling whole seeds.
    The comparison within a pair is the same on any monotone scale, so this needs no scale."""
    table = per_seed(model)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(table)
    draws = rng.integers(0, n, size=(BOOTSTRAP, n)) if n else np.zeros((0, 0), dtype=int)
    out = []
    for i, f in enumerate(model.factors):
        ref = model.reference[f]
        for level in model.levels(f)[1:]:
            pairs = [(c, (*c[:i], ref, *c[i + 1:])) for c in table.columns if c[i] == level]
            wins = np.column_stack([np.sign(table[a].to_numpy() - table[b].to_numpy()) for a, b in pairs])
            per_seed_share = ((wins > 0) + 0.5 * (wins == 0)).mean(axis=1)  # share of this seed's pairs won
            boot = per_seed_share[draws].mean(axis=1) if n > 1 else np.array([math.nan])
            out.append({"axis": f, "level": level, "reference": ref, "seeds": n, "pairs": wins.size,
                        "p_improve": float(per_seed_share.mean()) if n else math.nan,
                        "p_improve_ci_low": float(np.percentile(boot, 2.5)) if n > 1 else math.nan,
                        "p_improve_ci_high": float(np.percentile(boot, 97.5)) if n > 1 else math.nan})
    return pd.DataFrame(out, columns=["axis", "level", "reference", "seeds", "pairs", "p_improve",
                                      "p_improve_ci_low", "p_improve_ci_high"])


def pairing(done: pd.DataFrame, factors: tuple[str, ...], response: str) -> pd.DataFrame:
    """For each two-level factor: its difference per seed in points (averaged over the other
    factors' cells), the paired-by-seed t interval beside the unpaired Welch interval of the same
    numbers. Unadjusted: these show what pairing buys, the verdicts are in the effects table."""
    rows = []
    for f in factors:
        levels = [lvl for lvl in done[f].cat.categories if (done[f] == lvl).any()]
        if len(levels) != 2:
            continue
        ref, level = levels
        per_cell = done.pivot_table(index="seed", columns=list(factors), values=response, aggfunc="mean",
                                    observed=True)
        complete = per_cell.dropna()
        treat = complete.xs(level, axis=1, level=f).mean(axis=1) if len(factors) > 1 else complete[level]
        refs = complete.xs(ref, axis=1, level=f).mean(axis=1) if len(factors) > 1 else complete[ref]
        pair = stats.paired(treat.to_numpy(), refs.to_numpy())
        unpaired = stats.welch(treat.to_numpy(), refs.to_numpy())
        corr = float(np.corrcoef(treat, refs)[0, 1]) if len(treat) > 2 and treat.std() > 0 and refs.std() > 0 \
            else math.nan
        rows.append({"axis": f, "level": level, "reference": ref, "seeds": pair.n, "diff": pair.diff,
                     "diff_ci_low": pair.ci_low, "diff_ci_high": pair.ci_high, "paired_width": pair.width,
                     "unpaired_low": unpaired.ci_low, "unpaired_high": unpaired.ci_high,
                     "unpaired_width": unpaired.width, "width_ratio": unpaired.width / pair.width,
                     "seed_correlation": corr})
    columns = ["axis", "level", "reference", "seeds", "diff", "diff_ci_low", "diff_ci_high", "paired_width",
               "unpaired_low", "unpaired_high", "unpaired_width", "width_ratio", "seed_correlation"]
    return pd.DataFrame(rows, columns=columns)
