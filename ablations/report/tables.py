"""The descriptive tables of a grid: per cell, the leaderboard, two-way means, the run status,
and the runs that failed or diverged. The model-based tables are in `analysis`.

Statistics use the runs with status done; failed and diverged runs are counted in the status
table and listed, never dropped silently. Headline numbers are the final model's test accuracy;
selection (best epoch, epochs to a target) uses the validation split only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ablations.config import STATUSES, Status
from ablations.report import stats
from ablations.report.runs import PCT, Runs

PROBLEMS = (Status.FAILED, Status.DIVERGED)


def epochs_to_target(r: Runs, target: float) -> pd.Series:
    """Per done run: the first epoch (1-based) whose validation accuracy reaches `target`; NaN if none."""
    epochs = r.epochs[r.epochs["status"] == Status.DONE]
    hit = epochs[epochs["val_acc"] >= target * PCT]
    first = hit.groupby("run_id")["epoch"].min()
    return r.done["run_id"].map(first).astype(float).set_axis(r.done.index)


def cell_table(r: Runs, target: float) -> pd.DataFrame:
    """One row per cell: replicates, final test accuracy (mean, std, and an interval counting seed
    spread and test-set noise on the logit scale), validation-based selection, and cost."""
    done = r.done.assign(epochs_to_target=epochs_to_target(r, target))
    rows = []
    for key, group in r.runs.groupby(r.keys, observed=True, sort=True):
        ok = done.loc[done.index.intersection(group.index)]
        acc = stats.summarize(ok["test_acc"])
        images = ok["test_images"].max() if len(ok) else float("nan")
        low, high, flag = stats.cell_interval(ok["test_acc"], images)
        reach = ok["epochs_to_target"]
        rows.append({
            **dict(zip(r.keys, _tuple(key), strict=True)),
            "runs": len(group), "n": acc.n, "test_acc": acc.mean, "test_acc_std": acc.std,
            "test_acc_ci_low": low, "test_acc_ci_high": high, "interval_note": flag, "test_images": images,
            "train_acc": ok["train_acc"].mean(), "gap": ok["gap"].mean(), "val_acc": ok["val_acc"].mean(),
            "best_val_acc": ok["best_val_acc"].mean(), "best_val_epoch": ok["best_val_epoch"].mean(),
            "epochs_to_target": reach.mean(), "reached": int(reach.notna().sum()),
            "wall_s": ok["wall_s"].mean(), "images_per_s": ok["train_images_per_s"].mean(),
        })
    return pd.DataFrame(rows)


def interaction_tables(r: Runs) -> dict[str, pd.DataFrame]:
    """Mean final test accuracy for every pair of axes, pooled over the rest."""
    return {f"interaction_{a}__{b}": stats.interaction_means(r.done, a, b, "test_acc")
            for a, b in stats.pairs(r.axes) if len(r.done)}


def leaderboard(cells: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Cells with at least one done run, best mean final test accuracy first."""
    board = cells[cells["n"] > 0]
    board = board.assign(_order=range(len(board))).sort_values(["test_acc", "_order"], ascending=[False, True])
    board = board[[*keys, "n", "test_acc", "test_acc_ci_low", "test_acc_ci_high", "interval_note", "best_val_acc",
                   "wall_s"]]
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)


def status_table(r: Runs) -> pd.DataFrame:
    """Runs per status in every cell, every status a column, and the total."""
    counts = pd.crosstab([r.runs[k] for k in r.keys], r.runs["status"]).reindex(columns=list(STATUSES), fill_value=0)
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def problem_runs(r: Runs) -> pd.DataFrame:
    """Failed and diverged runs, one row each: left out of the statistics, never out of sight."""
    bad = r.runs[r.runs["status"].isin(PROBLEMS)]
    frame = bad[["status", *r.keys, "seed", "run_id", "diverged_epoch"]].assign(error=bad["error"].map(_first_line))
    return frame.sort_values(["status", *r.keys, "seed"]).reset_index(drop=True)


def _first_line(error: Any) -> str:
    """One line per run in the table; the full error text is in export/runs.csv."""
    lines = str(error or "").strip().splitlines()
    return lines[0][:160] if lines else ""


def _tuple(key: Any) -> tuple:
    return key if isinstance(key, tuple) else (key,)
