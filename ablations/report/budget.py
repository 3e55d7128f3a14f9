"""What a study can support: its training budget against the notebook's, whether its models
were trained to the end, and the hardware and precision the numbers come from.

A ranking of cells from models stopped halfway says which cells learn faster, not which end
better; the page opens with these facts so a reader weighs every finding against them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablations.config import Status
from ablations.report.runs import Runs, cell_name

NOTEBOOK_EPOCHS, NOTEBOOK_TRAIN_IMAGES = 20, 60_000  # the notebook: 20 epochs over MNIST's 60,000 train images
NOTEBOOK_IMAGES = NOTEBOOK_EPOCHS * NOTEBOOK_TRAIN_IMAGES
# Final train accuracy (%) below which a model counts as under-trained: a little under what a
# ResNet reaches on each training set when trained to the end (MNIST-like data: 99%).
TRAIN_FLOOR = {"mnist": 99.0, "synthetic": 99.0, "fashion_mnist": 95.0, "cifar10": 95.0}
STILL_RISING = 0.1  # points of validation accuracy gained in the last epoch that count as "still rising"
HARDWARE_KEYS = ("device_name", "precision", "cpu_capability")


@dataclass(frozen=True)
class Budget:
    epochs: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    train_images: tuple[float, ...]
    steps: tuple[float, ...]  # SGD steps per run: epochs x floor(train images / batch size)
    images_seen: tuple[float, ...]  # steps x batch size

    @property
    def notebook_share(self) -> tuple[float, ...]:
        return tuple(i / NOTEBOOK_IMAGES for i in self.images_seen)


def training_budget(r: Runs) -> Budget:
    """The distinct budgets of the store's runs (one, in a grid that varies no budget setting)."""
    rows = set()
    for config, images in zip(r.runs["config"], r.runs["train_images"], strict=True):
        epochs, batch = int(config.get("epochs") or 0), int(config.get("batch_size") or 1)
        steps = epochs * math.floor(images / batch) if np.isfinite(images) else math.nan
        rows.add((epochs, batch, images, steps, steps * batch))
    ordered = sorted(rows, key=lambda row: tuple(-1 if math.isnan(v) else v for v in row))
    return Budget(*(tuple(col) for col in zip(*ordered, strict=True)))


def spread(values: tuple[float, ...], fmt: str = ",.0f") -> str:
    """'1,500' or '1,500 to 3,000' for the values of one budget setting."""
    finite = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not finite:
        return "unknown"
    low, high = min(finite), max(finite)
    return f"{low:{fmt}}" if low == high else f"{low:{fmt}} to {high:{fmt}}"


def budget_sentence(b: Budget) -> str:
    return (f"Training budget: {spread(b.epochs)} epochs x floor({spread(b.train_images)} train images / batch "
            f"{spread(b.batch_sizes)}) = {spread(b.steps)} SGD steps per run, {spread(b.images_seen)} images seen: "
            f"{spread(tuple(100 * s for s in b.notebook_share), '.1f')}% of the notebook's {NOTEBOOK_EPOCHS} epochs "
            f"x {NOTEBOOK_TRAIN_IMAGES:,} images.")


@dataclass(frozen=True)
class Training:
    """Whether the models were trained to the end, and the evidence."""

    train_acc: float  # mean final train accuracy of done runs, %
    floor: float  # under this, under-trained
    last_gain: float  # mean validation accuracy gained in the last epoch, points; NaN without val records
    rising_cells: pd.Series  # cell name -> mean last-epoch gain, for cells still rising, largest first

    @property
    def low_train_acc(self) -> bool:
        return self.train_acc < self.floor

    @property
    def still_rising(self) -> bool:
        return bool(self.last_gain > STILL_RISING)

    @property
    def under_trained(self) -> bool:
        return self.low_train_acc or self.still_rising


def training_state(r: Runs) -> Training | None:
    """None when no run is done."""
    done = r.done
    if done.empty:
        return None
    datasets = {c.get("dataset") for c in done["config"]}
    floor = min(TRAIN_FLOOR.get(d, 99.0) for d in datasets)
    epochs = r.epochs[(r.epochs["status"] == Status.DONE) & r.epochs["val_acc"].notna()]
    gains = pd.Series(dtype=float)
    if len(epochs):
        last_two = epochs.sort_values("epoch").groupby("run_id").tail(2)
        per_run = last_two.groupby("run_id")["val_acc"].agg(lambda v: v.iloc[-1] - v.iloc[0] if len(v) == 2 else np.nan)
        keyed = done.set_index("run_id")[r.keys].join(per_run.rename("gain"), how="inner")
        names = keyed[r.keys].astype(str).apply(lambda row: cell_name({k: row[k] for k in r.keys}), axis=1)
        gains = keyed["gain"].groupby(names).mean()
        last_gain = float(per_run.mean())
    else:
        last_gain = math.nan
    rising = gains[gains > STILL_RISING].sort_values(ascending=False)
    return Training(float(done["train_acc"].mean()), floor, last_gain, rising)


def training_sentence(t: Training) -> str:
    acc = f"Mean final train accuracy {t.train_acc:.2f}%"
    rise = ("no validation records, so whether accuracy still rose at the end is unknown"
            if math.isnan(t.last_gain) else
            f"validation accuracy rose {t.last_gain:+.2f} points on average in the last epoch")
    if not t.under_trained:
        return (f"{acc} (at least {t.floor:.0f}%) and {rise}: the models are trained to a plateau, "
                "so the comparisons are of trained models.")
    reasons = []
    if t.low_train_acc:
        reasons.append(f"train accuracy is {t.floor - t.train_acc:.2f} points below {t.floor:.0f}%")
    if t.still_rising:
        top = ", ".join(f"{name} ({gain:+.2f})" for name, gain in t.rising_cells.head(3).items())
        reasons.append(f"validation accuracy is still rising at the last epoch ({rise}; most in {top})")
    elif math.isnan(t.last_gain):
        reasons.append(rise)
    return (f"**Under-trained**: {acc}; {' and '.join(reasons)}. The findings below compare models stopped "
            "early: they say which settings learn faster in this budget, not which end better.")


def hardware(r: Runs) -> tuple[str, str | None]:
    """The hardware line (device, resolved precision, CPU capability), and a warning when the
    runs of this store come from more than one of them."""
    prov = [p for p, s in zip(r.runs["provenance"], r.runs["status"], strict=True) if p and s != Status.QUEUED]
    combos = Counter(tuple(str(p.get(k) or "unknown") for k in HARDWARE_KEYS) for p in prov)
    if not combos:
        return "unknown (no run recorded its provenance)", None

    def describe(combo: tuple[str, ...]) -> str:
        device, precision, capability = combo
        return f"{device}, precision {precision}, CPU capability {capability}"
    shared = max(int(p.get("concurrent_runs") or 1) for p in prov)
    if shared > 1:  # images/s and wall time of a run measured beside others on the same device
        def describe(combo: tuple[str, ...], plain=describe) -> str:
            return f"{plain(combo)}, {shared} runs at a time sharing it (throughput per run is shared)"
    if len(combos) == 1:
        return describe(next(iter(combos))), None
    # precision as a studied axis differs by design: one machine, several precisions, no warning
    machines = {(device, capability) for device, _, capability in combos}
    if "precision" in r.axes and len(machines) == 1:
        (device, capability), = machines
        return f"{device}, precision by cell (the precision axis), CPU capability {capability}", None
    listing = "; ".join(f"{n} runs on {describe(c)}" for c, n in sorted(combos.items()))
    return "mixed (see the warning)", (f"**Warning: the runs of this store differ in device, precision or CPU "
                                       f"capability** ({listing}). Differences between cells may partly be "
                                       "differences between machines; compare runs of one machine.")


def seeds_per_cell(cells: pd.DataFrame) -> str:
    done = cells.loc[cells["n"] > 0, "n"]
    if done.empty:
        return "no done run"
    low, high = int(done.min()), int(done.max())
    return f"{low} seeds per cell" if low == high else f"{low} to {high} seeds per cell"


def caption_context(r: Runs, cells: pd.DataFrame, b: Budget) -> str:
    """n, budget and hardware, for the caption of every table and figure."""
    return (f"n = {len(r.done)} done runs, {seeds_per_cell(cells)}; {spread(b.epochs)} epochs, "
            f"{spread(b.steps)} SGD steps per run ({spread(tuple(100 * s for s in b.notebook_share), '.1f')}% of "
            f"the notebook's images); {hardware(r)[0]}.")
