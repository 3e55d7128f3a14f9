"""Store -> the DataFrames every table, figure and sentence of the report is computed from.

Accuracies are in percent and differences in percentage points throughout, so tables, figures
and the page read the same numbers. A cell is named one way everywhere (`cell_name`) and a
setting's value is printed one way everywhere (`label`).

Stores written before the validation split (no val_* columns, no grid meta key) still load:
a missing column reads as NULL, and the factors are then inferred from the configs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ablations.config import EXECUTION_FIELDS, Status, TrainConfig, field_types, normalize_key, parse_value
from ablations.errors import UserError
from ablations.grid.spec import Analysis, parse_analysis
from ablations.store.sqlite import Store

PCT = 100.0
# Science fields only: execution fields (device, data_root, ...) do not define a cell.
NOT_AXES = frozenset({"seed", *EXECUTION_FIELDS})
AXIS_ORDER = ("augment", "weight_decay", "schedule")  # the studied axes first, as in the grids
SINGLE_CELL = "cell"  # the grouping column of a store with no varying setting
# Split sizes (train, test) as shipped; ablations.data knows them too, but it imports torch.
SPLIT_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000),
               "synthetic": (1_024, 512)}
# Default validation split, as ablations.data carves it: a tenth of the train split, at most 5,000.
VALIDATION_SHARE, VALIDATION_MAX = 0.1, 5_000
RUN_FLOATS = ("wall_s", "started_at", "finished_at", "train_images_per_s", "peak_memory_bytes", "diverged_epoch",
              "best_val_epoch")
RUN_ACCURACIES = {"test_acc": "final_test_acc", "train_acc": "final_train_acc", "val_acc": "final_val_acc",
                  "best_val_acc": "best_val_acc"}
# The analysis's endpoint (as a grid names it) -> (column of `Runs.runs`, column of its image count).
ENDPOINTS = {"final_test_acc": ("test_acc", "test_images"), "final_val_acc": ("val_acc", "val_images"),
             "best_val_acc": ("best_val_acc", "val_images")}
EPOCH_COLUMNS = ("run_id", "epoch", "lr", "lr_last", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                 "test_acc", "seconds", "images_per_s")


@dataclass(frozen=True)
class Runs:
    """Every run of a store as one row, with its cell's coordinates as ordered categoricals."""

    runs: pd.DataFrame
    epochs: pd.DataFrame  # one row per epoch of every run, with the run's coordinates
    axes: tuple[str, ...]  # the factors, in display order
    fixed: dict[str, Any]  # science settings shared by every run
    from_grid: bool = False  # True: the axes are the ones the grid declared (meta key 'grid')
    plan: Analysis = field(default_factory=Analysis)  # the grid's [analysis], or the defaults

    @property
    def endpoint(self) -> tuple[str, str]:
        """(response column, its image-count column) of the declared endpoint."""
        return ENDPOINTS[self.plan.endpoint]

    @property
    def keys(self) -> list[str]:
        return list(self.axes) or [SINGLE_CELL]

    @property
    def done(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == Status.DONE]

    def levels(self, axis: str) -> list[str]:
        return list(self.runs[axis].cat.categories)


def label(value: Any) -> str:
    """How a setting's value appears in tables, figures and the page: 0.001, hflip+rotate, 10,15."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(label(v) for v in value) or "default"
    return str(value)


def cell_name(cell: dict[str, Any]) -> str:
    """The one name of a cell: 'augment=none, weight_decay=0'."""
    return ", ".join(f"{k}={label(v)}" for k, v in cell.items())


def cell_of(row: Any, keys: list[str]) -> dict[str, Any]:
    """{axis: level} of a table row (a Series or a namedtuple)."""
    get = row.__getitem__ if isinstance(row, pd.Series) else lambda k: getattr(row, k)
    return {k: get(k) for k in keys}


def select(frame: pd.DataFrame, cell: dict[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for key, value in cell.items():
        mask &= (frame[key].astype(str) == str(value)).to_numpy()
    return frame[mask]


def _sort_key(value: Any) -> tuple:
    # Numbers by value, then everything else by name.
    if isinstance(value, list):
        value = tuple(value)
    kind = 0 if isinstance(value, (int, float)) and not isinstance(value, bool) else 1
    return (value is None, kind, value if kind == 0 else label(value))


def _axes(configs: list[dict], meta: dict[str, Any] | None) -> tuple[tuple[str, ...], dict[str, list], bool]:
    """The factors and their levels in order: the grid's declared axes where the store has them,
    else every science setting that varies, each with TrainConfig's default level first, then the
    grid's order of levels. Axes themselves go in AXIS_ORDER (the store keeps the grid's keys sorted)."""
    keys = sorted({k for c in configs for k in c} - NOT_AXES)
    values = {k: [c.get(k) for c in configs] for k in keys}
    varying = [k for k in keys if len({json.dumps(v) for v in values[k]}) > 1]
    declared = [normalize_key(a) for a in (meta or {}).get("axes", {})]
    from_grid = bool(declared) and set(varying) <= set(declared)
    names = sorted([a for a in declared if a in varying] if from_grid else varying,
                   key=lambda k: (AXIS_ORDER.index(k) if k in AXIS_ORDER else len(AXIS_ORDER), k))
    default = TrainConfig().to_dict()
    order: dict[str, list] = {}
    for axis in names:
        distinct = list({json.dumps(v): v for v in values[axis]}.values())
        declared_levels = [label(v) for v in (meta or {}).get("axes", {}).get(axis, [])] if from_grid else []
        position = {lvl: i for i, lvl in enumerate(declared_levels)}
        # The default level first (the usual reference), then the grid's order, then by value.
        order[axis] = sorted(distinct, key=lambda v, a=axis: (v != default.get(a), position.get(label(v), len(position)),
                                                              _sort_key(v)))
    return tuple(names), order, from_grid


def load_runs(store: Store) -> Runs | None:
    """The store's runs and epochs as DataFrames; None if the store holds no run."""
    rows = store.runs()
    if not rows:
        return None
    configs = [r["config"] for r in rows]
    meta = store.grid()
    axes, order, from_grid = _axes(configs, meta if isinstance(meta, dict) and isinstance(meta.get("axes"), dict)
                                   else None)
    runs = pd.DataFrame({
        "run_id": [r["run_id"] for r in rows], "cell_id": [r["cell_id"] for r in rows],
        "seed": [r["seed"] for r in rows], "status": [r["status"] for r in rows],
        "grid": [r.get("grid") or "" for r in rows],
    })
    for axis in axes:
        runs[axis] = pd.Categorical([label(c.get(axis)) for c in configs], categories=[label(v) for v in order[axis]],
                                    ordered=True)
    if not axes:
        runs[SINGLE_CELL] = pd.Categorical(["all runs"] * len(rows))
    runs["error"] = pd.Series([r.get("error") for r in rows], dtype=object)
    for name in RUN_FLOATS:
        runs[name] = pd.Series([r.get(name) for r in rows], dtype=float)
    for ours, theirs in RUN_ACCURACIES.items():
        runs[ours] = pd.Series([r.get(theirs) for r in rows], dtype=float) * PCT
    runs["gap"] = runs["train_acc"] - runs["test_acc"]
    sizes = [(r.get("provenance") or {}).get("split_sizes") or {} for r in rows]
    pairs = list(zip(configs, sizes, strict=True))
    runs["test_images"] = [float(n["test"]) if "test" in n else test_images(c) for c, n in pairs]
    runs["train_images"] = [float(n["train"]) if "train" in n else train_images(c) for c, n in pairs]
    runs["val_images"] = [float(n["val"]) if "val" in n else val_images(c) for c, n in pairs]
    runs["config"] = configs
    runs["provenance"] = [r.get("provenance") or {} for r in rows]

    epochs = pd.DataFrame([{c: e.get(c) for c in EPOCH_COLUMNS} for e in store.epochs()], columns=list(EPOCH_COLUMNS))
    epochs = epochs.astype({c: float for c in EPOCH_COLUMNS if c not in ("run_id", "epoch")})
    epochs[["train_acc", "val_acc", "test_acc"]] *= PCT
    coords = runs[["run_id", "seed", "status", *([*axes] or [SINGLE_CELL])]]
    epochs = epochs.merge(coords, on="run_id", how="inner").sort_values(["run_id", "epoch"], ignore_index=True)
    all_keys = sorted({k for c in configs for k in c} - NOT_AXES)
    fixed = {k: configs[0].get(k) for k in all_keys
             if k not in axes and len({json.dumps(c.get(k)) for c in configs}) == 1}
    return Runs(runs, epochs, axes, fixed, from_grid, _plan(meta, store))


def _plan(meta: Any, store: Store) -> Analysis:
    """The analysis the grid declared when its store was made; the defaults for grids without one."""
    if not isinstance(meta, dict) or "analysis" not in meta:
        return Analysis()
    return parse_analysis(meta["analysis"], f"the grid recorded in {store.path}", meta.get("axes") or {})


def test_images(config: dict) -> float:
    """Images the final test accuracy was measured on: test_subset, else the dataset's test split.
    (Runs stored with their split sizes in provenance use those instead.)"""
    if config.get("test_subset"):
        return float(config["test_subset"])
    return float(SPLIT_SIZES.get(config.get("dataset"), (np.nan, np.nan))[1])


def train_images(config: dict) -> float:
    """Images a run trains on: train_subset, else the train split less the validation split."""
    if config.get("train_subset"):
        return float(config["train_subset"])
    total = SPLIT_SIZES.get(config.get("dataset"), (np.nan, np.nan))[0]
    return float(total - (val_images(config) if "val_subset" in config else 0))  # older stores: no split


def val_images(config: dict) -> float:
    """Images the validation accuracy is measured on: val_subset, else the default share of the train split."""
    if config.get("val_subset") is not None:
        return float(config["val_subset"])
    total = SPLIT_SIZES.get(config.get("dataset"), (np.nan, np.nan))[0]
    return float(min(VALIDATION_MAX, max(10, round(VALIDATION_SHARE * total)))) if np.isfinite(total) else np.nan


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
