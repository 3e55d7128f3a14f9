"""Store -> pandas tables of a grid: per cell, against a baseline cell, main effects,
two-way interactions, a leaderboard and the run status, each with its statistics.

Accuracies are in percent and differences in percentage points throughout, so the tables,
the figures and the sentences of the page read the same numbers. Statistics use the runs
with status done; failed and diverged runs are counted in the status table and listed,
never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablations import stats
from ablations.config import EXECUTION_FIELDS, TrainConfig, field_types, normalize_key, parse_value
from ablations.errors import UserError
from ablations.store import STATUSES, Store

PCT = 100.0
# Science fields only: execution fields (device, data_root, ...) do not define a cell.
NOT_AXES = frozenset({"seed", *EXECUTION_FIELDS})
AXIS_ORDER = ("augment", "weight_decay", "schedule")  # the studied axes first, as in the grids
SINGLE_CELL = "cell"  # the grouping column of a store with no varying setting


@dataclass(frozen=True)
class Runs:
    """Every run of a store as one row, with its cell's coordinates as ordered categoricals."""

    runs: pd.DataFrame
    epochs: pd.DataFrame  # one row per epoch of every run, with the run's coordinates
    axes: tuple[str, ...]  # settings that vary between runs, in display order
    fixed: dict[str, Any]  # science settings shared by every run

    @property
    def keys(self) -> list[str]:
        return list(self.axes) or [SINGLE_CELL]

    @property
    def done(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "done"]

    def levels(self, axis: str) -> list[str]:
        return list(self.runs[axis].cat.categories)


def label(value: Any) -> str:
    """How a setting's value appears in tables and figures: 0.001, hflip+rotate, 10,15."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(label(v) for v in value) or "default"
    return str(value)


def _sort_key(value: Any) -> tuple:
    # TrainConfig's default (augment none, weight decay 0, constant lr) first: it is the
    # usual reference level. Then numbers by value, then everything else by name.
    if isinstance(value, list):
        value = tuple(value)
    kind = 0 if isinstance(value, (int, float)) and not isinstance(value, bool) else 1
    return (value is None, kind, value if kind == 0 else label(value))


def load_runs(store: Store) -> Runs | None:
    """The store's runs and epochs as DataFrames; None if the store holds no run."""
    rows = store.runs()
    if not rows:
        return None
    configs = [r["config"] for r in rows]
    keys = sorted({k for c in configs for k in c} - NOT_AXES)
    values = {k: [c.get(k) for c in configs] for k in keys}
    varying = [k for k in keys if len({json.dumps(v) for v in values[k]}) > 1]
    axes = tuple(sorted(varying, key=lambda k: (AXIS_ORDER.index(k) if k in AXIS_ORDER else len(AXIS_ORDER), k)))
    default = TrainConfig().to_dict()
    runs = pd.DataFrame({
        "run_id": [r["run_id"] for r in rows],
        "cell_id": [r["cell_id"] for r in rows],
        "seed": [r["seed"] for r in rows],
        "status": [r["status"] for r in rows],
        "grid": [r["grid"] or "" for r in rows],
    })
    for axis in axes:
        distinct = {json.dumps(v): v for v in values[axis]}.values()
        ordered = sorted(distinct, key=lambda v: (v != default.get(axis), _sort_key(v)))
        runs[axis] = pd.Categorical([label(v) for v in values[axis]], categories=[label(v) for v in ordered],
                                    ordered=True)
    if not axes:
        runs[SINGLE_CELL] = pd.Categorical(["all runs"] * len(rows))
    for name in ("error", "wall_s", "started_at", "finished_at", "train_images_per_s", "peak_memory_bytes",
                 "diverged_epoch"):
        runs[name] = pd.Series([r[name] for r in rows], dtype=object if name == "error" else float)
    for ours, theirs in (("test_acc", "final_test_acc"), ("train_acc", "final_train_acc"),
                         ("best_test_acc", "best_test_acc")):
        runs[ours] = pd.Series([r[theirs] for r in rows], dtype=float) * PCT
    runs["gap"] = runs["train_acc"] - runs["test_acc"]
    runs["config"] = configs
    runs["provenance"] = [r["provenance"] or {} for r in rows]

    epochs = pd.DataFrame(store.epochs(), columns=["run_id", "epoch", "lr", "train_loss", "train_acc",
                                                   "test_loss", "test_acc", "seconds", "images_per_s"])
    epochs = epochs.astype({c: float for c in epochs.columns if c not in ("run_id", "epoch")})
    epochs[["train_acc", "test_acc"]] *= PCT
    coords = runs[["run_id", "seed", "status", *([*axes] or [SINGLE_CELL])]]
    epochs = epochs.merge(coords, on="run_id", how="inner").sort_values(["run_id", "epoch"], ignore_index=True)
    fixed = {k: values[k][0] for k in keys if k not in varying}
    return Runs(runs, epochs, axes, fixed)


# ---- the baseline cell -------------------------------------------------------------------
def parse_baseline(text: str | None) -> dict[str, str]:
    """'augment=none,weight_decay=0' -> {key: value}. A piece without '=' continues the value
    before it, so list settings work: 'milestones=10,15,schedule=step'."""
    out: dict[str, str] = {}
    last = None
    for piece in (text or "").split(","):
        if "=" in piece:
            key, value = piece.split("=", 1)
            last = normalize_key(key)
            out[last] = value.strip()
        elif piece.strip() and last is not None:
            out[last] += "," + piece.strip()
        elif piece.strip():
            raise UserError(f"--baseline {text!r}: expected key=value,..., e.g. augment=none,weight_decay=0")
    return out


def baseline_cell(r: Runs, given: dict[str, Any] | None) -> tuple[dict[str, str], bool]:
    """The reference cell as {axis: label}, and whether it is the one asked for.

    Unless given, each axis takes TrainConfig's default (augment none, weight decay 0,
    constant lr), else its first level. A baseline that was asked for and is not in the store
    is an error; a default that is not there falls back to the first cell, and the page says so.
    """
    if not r.axes:
        return {SINGLE_CELL: "all runs"}, True
    cell = {a: r.levels(a)[0] for a in r.axes}  # levels start with TrainConfig's default
    for key, value in (given or {}).items():
        name = normalize_key(key)
        if name not in r.axes:
            raise UserError(f"--baseline {key}: not a setting that varies in this store; "
                            f"choose from: {', '.join(r.axes)}")
        cell[name] = label(parse_value(name, value, field_types()[name]))
    present = r.runs[list(r.axes)].drop_duplicates().sort_values(list(r.axes))
    cells = [dict(zip(r.axes, row, strict=True)) for row in present.itertuples(index=False)]
    if cell in cells:
        return cell, True
    if given:
        listing = "; ".join(cell_name(c) for c in cells)
        raise UserError(f"baseline cell {cell_name(cell)} is not in the store; cells: {listing}")
    return cells[0], False


def cell_name(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())


def _select(frame: pd.DataFrame, cell: dict[str, str]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for key, value in cell.items():
        mask &= (frame[key] == value).to_numpy()
    return frame[mask]


# ---- the tables --------------------------------------------------------------------------
def epochs_to_target(r: Runs, target: float) -> pd.Series:
    """Per done run: the first epoch (1-based) whose test accuracy reaches `target`; NaN if none."""
    hit = r.epochs[(r.epochs["status"] == "done") & (r.epochs["test_acc"] >= target * PCT)]
    first = hit.groupby("run_id")["epoch"].min()
    return r.done["run_id"].map(first).astype(float).set_axis(r.done.index)


def cell_table(r: Runs, target: float) -> pd.DataFrame:
    """One row per cell: replicates, final test accuracy with its spread and t interval, and
    what each cell costs."""
    done = r.done.assign(epochs_to_target=epochs_to_target(r, target))
    rows = []
    for key, group in r.runs.groupby(r.keys, observed=True, sort=True):
        ok = done.loc[done.index.intersection(group.index)]
        acc = stats.summarize(ok["test_acc"])
        reach = ok["epochs_to_target"]
        rows.append({
            **dict(zip(r.keys, _tuple(key), strict=True)),
            "runs": len(group), "n": acc.n, "test_acc": acc.mean, "test_acc_std": acc.std,
            "test_acc_ci_low": acc.ci_low, "test_acc_ci_high": acc.ci_high,
            "best_test_acc": ok["best_test_acc"].mean(), "train_acc": ok["train_acc"].mean(),
            "gap": ok["gap"].mean(), "epochs_to_target": reach.mean(), "reached": int(reach.notna().sum()),
            "wall_s": ok["wall_s"].mean(), "images_per_s": ok["train_images_per_s"].mean(),
        })
    return pd.DataFrame(rows)


def difference_table(r: Runs, base: dict[str, str]) -> pd.DataFrame:
    """Every other cell against the baseline cell: Welch difference of final test accuracy,
    Holm-adjusted over the cells (one family)."""
    ref = _select(r.done, base)["test_acc"]
    rows = []
    for key, group in r.done.groupby(r.keys, observed=True, sort=True):
        cell = dict(zip(r.keys, _tuple(key), strict=True))
        if cell == base:
            continue
        d = stats.welch(group["test_acc"], ref)
        rows.append({**cell, "n": d.n, "n_ref": d.n_ref, "test_acc": d.mean, "diff": d.diff,
                     "diff_ci_low": d.ci_low, "diff_ci_high": d.ci_high, "df": d.df, "p": d.p})
    return _with_holm(pd.DataFrame(rows, columns=[*r.keys, "n", "n_ref", "test_acc", "diff", "diff_ci_low",
                                                  "diff_ci_high", "df", "p"]))


def main_effects(r: Runs, base: dict[str, str]) -> pd.DataFrame:
    """Per axis and level: final test accuracy pooled over the other axes, and its Welch
    difference to the baseline's level; Holm-adjusted over all these contrasts (one family)."""
    parts = []
    for axis in r.axes:
        m = stats.marginal_means(r.done, axis, "test_acc", reference=base[axis])
        m = m.rename(columns={axis: "level", "mean": "test_acc", "std": "test_acc_std",
                              "ci_low": "test_acc_ci_low", "ci_high": "test_acc_ci_high"})
        m.insert(0, "axis", axis)
        m.insert(2, "reference", base[axis])
        m["level"] = m["level"].astype(str)
        parts.append(m)
    columns = ["axis", "level", "reference", "n", "test_acc", "test_acc_std", "test_acc_ci_low",
               "test_acc_ci_high", "diff", "diff_ci_low", "diff_ci_high", "df", "p"]
    frame = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    return _with_holm(frame)


def interaction_tables(r: Runs) -> dict[str, pd.DataFrame]:
    """Mean final test accuracy for every pair of axes, pooled over the rest."""
    return {f"interaction_{a}__{b}": stats.interaction_means(r.done, a, b, "test_acc")
            for a, b in stats.pairs(r.axes) if len(r.done)}


def leaderboard(cells: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Cells with at least one done run, best mean final test accuracy first."""
    board = cells[cells["n"] > 0]
    board = board.assign(_order=range(len(board))).sort_values(["test_acc", "_order"], ascending=[False, True])
    board = board[[*keys, "n", "test_acc", "test_acc_ci_low", "test_acc_ci_high", "best_test_acc", "wall_s"]]
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
    bad = r.runs[r.runs["status"].isin(["failed", "diverged"])]
    frame = bad[["status", *r.keys, "seed", "run_id", "diverged_epoch"]].assign(error=bad["error"].map(_first_line))
    return frame.sort_values(["status", *r.keys, "seed"]).reset_index(drop=True)


def _with_holm(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["p_holm"] = stats.holm(frame["p"].to_numpy(dtype=float)) if len(frame) else []
    frame["significant"] = frame["p_holm"] < stats.ALPHA
    return frame


def _first_line(error: Any) -> str:
    """One line per run in the table; the full error text is in export/runs.csv."""
    lines = str(error or "").strip().splitlines()
    return lines[0][:160] if lines else ""


def _tuple(key: Any) -> tuple:
    return key if isinstance(key, tuple) else (key,)
