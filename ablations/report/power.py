"""Seeds a difference needs: from the spread a store shows, the seeds per cell a two-sided t test
needs to detect 0.5, 1 and 2 points between two cells at 80% power, alpha 0.05.

In raw points on purpose: this answers "how many seeds for a difference of this many points",
which a reader sizes a study by, whatever scale the verdicts are tested on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablations.report import factorial as fm
from ablations.report import stats
from ablations.report.runs import cell_name

DELTAS = (0.5, 1.0, 2.0)  # points of accuracy a study might want to detect
SEEDS_COLUMNS = {d: f"seeds_for_{d:g}".replace(".", "_") for d in DELTAS}
UNPAIRED, PAIRED = "two cells compared unpaired", "two cells paired by seed"


def seeds_needed(cells: pd.DataFrame, keys: list[str], points_model: fm.Factorial | None) -> pd.DataFrame:
    """From the pooled within-cell std and the largest cell's (unpaired t test), and the std of a
    seed-paired difference from the blocked model in points (paired t test)."""
    spread = cells[(cells["n"] >= 2) & cells["test_acc_std"].notna()]
    rows = []
    if len(spread):
        pooled = math.sqrt(float(np.average(spread["test_acc_std"] ** 2, weights=spread["n"] - 1)))
        rows.append({"spread": "pooled within-cell seed std", "design": UNPAIRED, "std": pooled, "paired": False})
        worst = spread.loc[spread["test_acc_std"].idxmax()]
        rows.append({"spread": f"largest cell seed std ({cell_name({k: worst[k] for k in keys})})",
                     "design": UNPAIRED, "std": float(worst["test_acc_std"]), "paired": False})
    if points_model is not None and "C(seed)" in points_model.formula:
        diff_std = math.sqrt(2 * float(points_model.classical.mse_resid))  # two runs of one seed: each has the residual
        rows.append({"spread": "seed-paired difference (residual of the blocked model x sqrt 2)",
                     "design": PAIRED, "std": diff_std, "paired": True})
    for row in rows:
        for delta, column in SEEDS_COLUMNS.items():
            row[column] = stats.seeds_needed(row["std"], delta, paired_by_seed=row["paired"])
    columns = ["spread", "design", "std", *SEEDS_COLUMNS.values()]
    return pd.DataFrame(rows, columns=[*columns, "paired"])[columns]
