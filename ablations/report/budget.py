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
from ablations.report.words import device, plural

NOTEBOOK_EPOCHS, NOTEBOOK_TRAIN_IMAGES = 20, 60_000  # the notebook: 20 epochs over MNIST's 60,000 train images
NOTEBOOK_IMAGES = NOTEBOOK_EPOCHS * NOTEBOOK_TRAIN_IMAGES
# Final train accuracy (%) below which a model counts as under-trained: a little under what a
# ResNet reaches on each training set when trained to the end (MNIST-like data: 99%).
TRAIN_FLOOR = {"mnist": 99.0, "synthetic": 99.0, "fashion_mnist": 95.0, "cifar10": 95.0}
HARDWARE_KEYS = ("device_name", "precision", "cpu_capability")
LISTED = 3  # cells named in a sentence; the rest are in their table


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
    """Whether the models were trained to a plateau, and the evidence."""

    train_acc: float  # mean final train accuracy of done runs, %
    floor: float  # under this, under-trained when there is no validation record to judge by
    plateau_points: float  # a cell has plateaued when its line over the last fifth rises less than this
    rises: pd.Series  # cell name -> rise over the last fifth of training (points), every cell with records
    share: float  # the budget as a share of the notebook's images (the largest, for a pilot)
    cells: int | None = None  # the design's cells: more than `rises` while some have no done run
    # per cell name: the rise's 95% interval from the seeds and the Theil-Sen rise (plateau's columns)
    evidence: pd.DataFrame | None = None

    @property
    def rising(self) -> pd.Series:
        """Cells that had not plateaued, largest rise first."""
        return self.rises[self.rises >= self.plateau_points].sort_values(ascending=False)

    @property
    def under_trained(self) -> bool:
        if self.rises.notna().any():
            return len(self.rising) > 0
        return self.train_acc < self.floor

    @property
    def shown_learning(self) -> int:
        """Cells over the plateau whose rise's whole 95% interval lies above zero: the seeds show them
        still learning, whether or not they show the gain reaching the plateau."""
        if self.evidence is None:
            return 0
        return int((self.evidence.loc[self.rising.index, "rise_ci_low"] > 0).sum())

    @property
    def plateau_not_shown(self) -> bool:
        """Some cell's least-squares line rose the plateau or more, but the seeds show none of those cells
        rising at all, and the models fit their training set: the rise may be epoch-to-epoch jitter, which
        is not evidence of under-training."""
        # under-trained with train accuracy over the floor can only come from a measured rise
        return (self.under_trained and self.train_acc >= self.floor and self.evidence is not None
                and self.shown_learning == 0)


def training_state(r: Runs, plateau: pd.DataFrame, points: float) -> Training | None:
    """None when no run is done. `plateau` is `curves.plateau` of the same runs."""
    done = r.done
    if done.empty:
        return None
    datasets = {c.get("dataset") for c in done["config"]}
    floor = min(TRAIN_FLOOR.get(d, 99.0) for d in datasets)
    rises, evidence = pd.Series(dtype=float), None
    if len(plateau):
        names = [cell_name({k: row[k] for k in r.keys}) for _, row in plateau.iterrows()]
        rises = pd.Series(plateau["rise"].to_numpy(float), index=names).dropna()
        evidence = plateau[["rise_ci_low", "rise_ci_high", "robust_rise"]].set_axis(names)
    share = max(training_budget(r).notebook_share, default=math.nan)
    cells = math.prod(len(r.levels(a)) for a in r.axes) if r.axes else None
    return Training(float(done["train_acc"].mean()), floor, points, rises, share, cells, evidence)


def caveat(t: Training) -> str:
    """The reading's first line when the models had not finished learning: what the findings measure.
    Where no cell is shown still rising, it says the plateau is not shown, not that the models are
    under-trained: a rise inside the seeds' noise is no evidence of either."""
    if t.plateau_not_shown:
        return (f"**Plateau not shown** in {len(t.rising)} of {plural(len(t.rises), 'cell')} at {100 * t.share:.1f}% "
                f"of the notebook's training images: the least-squares line through validation accuracy rose "
                f"{t.plateau_points:g} points or more over the last fifth of training ({_rises_with_intervals(t)}), "
                "but each of those intervals holds zero: the rise is not resolved from the epoch-to-epoch jitter. "
                "Findings that involve those cells hold at this budget; that they would hold after longer "
                "training is not shown.")
    if t.rises.notna().any():
        why = (f"validation accuracy still rose {t.plateau_points:g} points or more over the last fifth of training "
               f"in {len(t.rising)} of {plural(len(t.rises), 'cell')}")
    else:
        why = f"mean final train accuracy {t.train_acc:.2f}% is below {t.floor:.0f}%"
    return (f"**Under-trained** at {100 * t.share:.1f}% of the notebook's training images: {why}. These findings "
            "measure learning speed at this budget, not where training ends.")


def _rises_with_intervals(t: Training) -> str:
    """'cell: +0.93, 95% CI -0.52 to +2.38, Theil-Sen +0.10' for the cells over the plateau, largest rise first."""
    def one(name: str, rise: float) -> str:
        low, high, robust = t.evidence.loc[name, ["rise_ci_low", "rise_ci_high", "robust_rise"]]
        interval = "no interval" if math.isnan(low) or math.isnan(high) else f"95% CI {low:+.2f} to {high:+.2f}"
        return f"{name}: {rise:+.2f}, {interval}, Theil–Sen {robust:+.2f}"
    listed = "; ".join(one(name, rise) for name, rise in t.rising.head(LISTED).items())
    more = len(t.rising) - LISTED
    return listed + (f"; {plural(more, 'more cell')} in the Plateau table" if more > 0 else "")


def training_sentence(t: Training) -> str:
    acc = f"Mean final train accuracy {t.train_acc:.2f}%"
    if t.rises.isna().all() or t.rises.empty:
        tail = "no validation records, so whether accuracy had plateaued is unknown"
        return f"{acc}; {tail}." + (f" {caveat(t)}" if t.under_trained else "")
    if not t.under_trained:
        if t.cells and len(t.rises) < t.cells:  # a store still filling: say which cells the claim covers
            return (f"{acc}; the validation accuracy of each of the {len(t.rises)} cells with a done run (of "
                    f"{t.cells} in the design) rose less than {t.plateau_points:g} points over the last fifth of "
                    "training; the other cells are not measured yet.")
        return (f"{acc}; every cell's validation accuracy rose less than {t.plateau_points:g} points over the last "
                "fifth of training: the models are trained to a plateau, so the comparisons are of trained models.")
    if t.plateau_not_shown:
        return f"{acc}. {caveat(t)}"
    top = ", ".join(f"{name} ({gain:+.2f})" for name, gain in t.rising.head(LISTED).items())
    return (f"{acc}; validation accuracy still rises over the last fifth of training (most in {top}). {caveat(t)}")


def hardware_of(provenance: dict) -> tuple[str, str, str]:
    """A run's hardware as the report groups it: device, resolved precision, CPU capability."""
    # one machine under two spellings of its name ("(1 threads)" from older runs) is one machine
    return (device(str(provenance.get("device_name") or "unknown")),
            *(str(provenance.get(k) or "unknown") for k in HARDWARE_KEYS[1:]))


def describe_hardware(combo: tuple[str, ...]) -> str:
    name, precision, capability = combo
    return f"{name}, precision {precision}, CPU capability {capability}"


def mixed_hardware(r: Runs) -> bool:
    """The runs come from more than one device, precision or CPU capability, other than by design
    (precision as a studied axis on one machine)."""
    combos = {hardware_of(p) for p, s in zip(r.runs["provenance"], r.runs["status"], strict=True)
              if p and s != Status.QUEUED}
    machines = {(device, capability) for device, _, capability in combos}
    return len(combos) > 1 and not ("precision" in r.axes and len(machines) == 1)


def hardware(r: Runs) -> tuple[str, str | None]:
    """The hardware line (device, resolved precision, CPU capability), and a warning when the
    runs of this store come from more than one of them."""
    prov = [p for p, s in zip(r.runs["provenance"], r.runs["status"], strict=True) if p and s != Status.QUEUED]
    combos = Counter(hardware_of(p) for p in prov)
    if not combos:
        return "unknown (no run recorded its provenance)", None
    describe = describe_hardware
    shared = max(int(p.get("concurrent_runs") or 1) for p in prov)
    if shared > 1:  # images/s and wall time of a run measured beside others on the same device
        def describe(combo: tuple[str, ...], plain=describe_hardware) -> str:
            return f"{plain(combo)}, {shared} runs at a time sharing it (throughput per run is shared)"
    if len(combos) == 1:
        return describe(next(iter(combos))), None
    if not mixed_hardware(r):  # precision as a studied axis differs by design: one machine, no warning
        (name, _, capability), *_ = combos
        return f"{name}, precision by cell (the precision axis), CPU capability {capability}", None
    listing = "; ".join(f"{plural(n, 'run')} on {describe(c)}" for c, n in sorted(combos.items()))
    check = "the sensitivity table refits the model on the runs of the machine with the most of them alone"
    precisions = {precision for _, precision, _ in combos}
    if len(precisions) == 1:  # the same arithmetic; kernels that round differently, and perhaps uneven cells
        return "mixed (see the warning)", (
            f"**Warning: the runs of this store come from more than one machine** ({listing}), all in "
            f"{next(iter(precisions))}. Their kernels round differently, and where a cell's runs come from one "
            f"machine more than another, differences between cells may partly be differences between machines: "
            f"{check}.")
    return "mixed (see the warning)", (f"**Warning: the runs of this store differ in device, precision or CPU "
                                       f"capability** ({listing}). Differences between cells may partly be "
                                       f"differences between machines; compare runs of one machine: {check}.")


def machines(r: Runs) -> pd.DataFrame:
    """Runs per machine and precision (device, resolved precision, CPU capability), done ones apart."""
    rows = [{"device_name": device(str(p.get("device_name") or "unknown")),
             "precision": str(p.get("precision") or "unknown"), "cpu_capability": str(p.get("cpu_capability") or "–"),
             "done": s == Status.DONE} for p, s in zip(r.runs["provenance"], r.runs["status"], strict=True)
            if p and s != Status.QUEUED]
    if not rows:
        return pd.DataFrame(columns=[*HARDWARE_KEYS, "runs", "done"])
    frame = pd.DataFrame(rows).groupby(list(HARDWARE_KEYS), sort=True)["done"].agg(runs="size", done="sum")
    return frame.reset_index()


def seeds_per_cell(cells: pd.DataFrame) -> str:
    done = cells.loc[cells["n"] > 0, "n"]
    if done.empty:
        return "no done run"
    low, high = int(done.min()), int(done.max())
    return f"{plural(low, 'seed')} per cell" if low == high else f"{low} to {high} seeds per cell"


def caption_context(r: Runs, cells: pd.DataFrame, b: Budget) -> str:
    """n, budget and hardware, for the caption of every table and figure."""
    return (f"n = {plural(len(r.done), 'done run')}, {seeds_per_cell(cells)}; {spread(b.epochs)} epochs, "
            f"{spread(b.steps)} SGD steps per run ({spread(tuple(100 * s for s in b.notebook_share), '.1f')}% of "
            f"the notebook's images); {hardware(r)[0]}.")
