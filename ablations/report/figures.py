"""The standard plots of a grid and of a benchmark run, as PNG (for the page) and SVG (for papers).

Each figure is drawn from the same DataFrames as the tables. A figure the store cannot
support (say, a heatmap over weight decay x schedule when only augmentation varies) is
skipped with a reason that the page prints; drawing never stops the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablations.config import Status  # noqa: E402
from ablations.errors import UserError  # noqa: E402
from ablations.report.bench import Bench  # noqa: E402
from ablations.report.budget import caption_context, training_budget  # noqa: E402
from ablations.report.runs import Runs, cell_name  # noqa: E402
from ablations.report.study import Study  # noqa: E402
from ablations.schedules import lr_curve, make_schedule  # noqa: E402

DPI = 110
LR_STEPS_PER_EPOCH = 100  # resolution of the drawn lr curves; the real step count does not change their shape
# Fixed SVG element ids and no date: the same store gives byte-identical files.
RC = {"svg.hashsalt": "ablations-report", "svg.fonttype": "none"}
SCHEDULE_FIELDS = ("schedule", "lr", "epochs", "milestones", "gamma", "warmup_epochs")


class Skip(Exception):
    """This store cannot support the figure; the message says why, for the page."""


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str = ""
    paths: tuple[Path, ...] = ()
    skipped: str | None = None  # why it was not drawn


def draw_grid_figures(study: Study, folder: Path) -> list[Figure]:
    """Every standard figure of a grid, in page order; each caption ends with n and the budget."""
    r, cells = study.runs, study.tables["cells"]
    done = r.epochs[r.epochs["status"] == Status.DONE]
    effects = study.tables.get("main_effects")
    specs: list[tuple[str, str, Callable[[], str]]] = [
        ("learning_curves_val_acc", "Validation accuracy per epoch", lambda: _curves(r, done, "val_acc", folder)),
        ("learning_curves_val_loss", "Validation loss per epoch", lambda: _curves(r, done, "val_loss", folder)),
        ("heatmap_test_acc", "Final test accuracy: weight decay x schedule", lambda: _heatmap(r, folder)),
        ("main_effects", "Main effects on final test accuracy",
         lambda: _main_effects(effects, study.model_note, folder)),
        ("train_vs_test", "Final train and test accuracy per cell", lambda: _train_vs_test(r, cells, folder)),
        ("lr_schedules", "Learning rate of each schedule", lambda: _lr_curves(r, folder)),
    ]
    context = caption_context(r, cells, training_budget(r))
    return [_attempt(name, title, draw, folder, context) for name, title, draw in specs]


def draw_bench_figures(bench: Bench, folder: Path) -> list[Figure]:
    return [_attempt(bench.file_name(g), f"Throughput: {g}", lambda t=t, g=g: _bench_bars(bench, g, t, folder), folder)
            for g, t in bench.groups.items()]


def _attempt(name: str, title: str, draw: Callable[[], str], folder: Path, context: str = "") -> Figure:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with plt.rc_context(RC), sns.axes_style("whitegrid"):
            caption = draw()
    except Skip as why:
        return Figure(name, title, skipped=str(why))
    except OSError:  # a full or failing disk is no plotting bug: the report stops, and the previous one stays
        raise
    except Exception as err:  # a plotting bug must cost one figure, not the report of a finished grid
        return Figure(name, title, skipped=f"could not be drawn ({type(err).__name__}: {err})")
    finally:
        plt.close("all")
    caption = f"{caption} {context}".strip()
    return Figure(name, title, caption, (folder / f"{name}.png", folder / f"{name}.svg"))


def _save(fig: plt.Figure, folder: Path, name: str) -> None:
    fig.savefig(folder / f"{name}.png", dpi=DPI, bbox_inches="tight")
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})


def _pooled(r: Runs, shown: tuple[str, ...]) -> str:
    rest = [a for a in r.axes if a not in shown]
    return f" Pooled over {', '.join(rest)}." if rest else ""


# ---- grid figures ------------------------------------------------------------------------
def _curves(r: Runs, done: pd.DataFrame, metric: str, folder: Path) -> str:
    if done.empty or done[metric].isna().all():
        raise Skip("no done run has per-epoch validation records (a store written before the validation split)")
    col = "augment" if "augment" in r.axes else None
    row = "weight_decay" if "weight_decay" in r.axes else None
    hue = "schedule" if "schedule" in r.axes else None
    ylabel = {"val_acc": "validation accuracy (%)", "val_loss": "validation loss"}[metric]
    grid = sns.relplot(data=done, x="epoch", y=metric, col=col, row=row, hue=hue, kind="line", errorbar="sd",
                       marker="o", height=2.6, aspect=1.35, facet_kws={"margin_titles": True, "sharey": True})
    grid.set_axis_labels("epoch", ylabel)
    epochs = sorted(done["epoch"].unique())
    for ax in grid.axes.flat:
        ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: max(1, len(epochs) // 10)])
    _save(grid.figure, folder, f"learning_curves_{metric}")
    panels = " x ".join(a for a in (col, row) if a) or "one panel"
    return (f"Mean over seeds (line) and ±1 std (band), done runs only; panels: {panels}"
            f"{'; colour: schedule' if hue else ''}.{_pooled(r, ('augment', 'weight_decay', 'schedule'))}")


def _heatmap(r: Runs, folder: Path) -> str:
    missing = [a for a in ("weight_decay", "schedule") if a not in r.axes]
    if missing:
        raise Skip(f"needs weight_decay and schedule to vary; this store does not vary {' or '.join(missing)}")
    if r.done.empty:
        raise Skip("no done run")
    panels = r.levels("augment") if "augment" in r.axes else [None]
    pivots = []
    for level in panels:
        part = r.done if level is None else r.done[r.done["augment"] == level]
        pivot = part.pivot_table(index="weight_decay", columns="schedule", values="test_acc", aggfunc="mean",
                                 observed=False).reindex(index=r.levels("weight_decay"), columns=r.levels("schedule"))
        pivots.append((level, pivot))
    values = np.concatenate([p.to_numpy().ravel() for _, p in pivots])
    vmin, vmax = np.nanmin(values), np.nanmax(values)  # one colour scale: panels compare directly
    fig, axes = plt.subplots(1, len(pivots), figsize=(0.9 + 3.6 * len(pivots), 0.8 + 0.55 * len(pivots[0][1])),
                             squeeze=False)
    for i, (ax, (level, pivot)) in enumerate(zip(axes[0], pivots, strict=True)):
        sns.heatmap(pivot, ax=ax, annot=True, fmt=".2f", cmap="viridis", vmin=vmin, vmax=vmax,
                    cbar=i == len(pivots) - 1, cbar_kws={"label": "final test accuracy (%)"})
        ax.set_title("all runs" if level is None else f"augment = {level}")
    _save(fig, folder, "heatmap_test_acc")
    return ("Mean final test accuracy (%) of done runs, one colour scale for all panels; blank: no done run."
            f"{_pooled(r, ('augment', 'weight_decay', 'schedule'))}")


def _main_effects(effects: pd.DataFrame | None, why_no_model: str, folder: Path) -> str:
    if effects is None:
        raise Skip(f"no factorial model: {why_no_model}")
    axes = list(dict.fromkeys(effects["axis"]))
    fig, plots = plt.subplots(1, len(axes), figsize=(0.6 + 3.2 * len(axes), 3.2), squeeze=False, sharey=True)
    for ax, axis in zip(plots[0], axes, strict=True):
        part = effects[effects["axis"] == axis]
        x = np.arange(len(part))
        mean = part["test_acc"].to_numpy(dtype=float)
        low = np.nan_to_num(mean - part["test_acc_ci_low"].to_numpy(dtype=float))  # no interval: no bar
        high = np.nan_to_num(part["test_acc_ci_high"].to_numpy(dtype=float) - mean)
        ax.errorbar(x, mean, yerr=[low, high], fmt="o-", capsize=4)
        ax.set_xticks(x, part["level"], rotation=30 if len(part) > 3 else 0)
        qualified = part["qualified_by"].iloc[0]
        ax.set_xlabel(f"{axis} *" if qualified else axis)
    plots[0][0].set_ylabel("final test accuracy (%)")
    _save(fig, folder, "main_effects")
    return ("Least-squares mean of each level (equal weight on every cell of the other axes) from the factorial "
            "model, with its pointwise 95% HC3 interval. * an interaction qualifies this axis: see simple effects.")


def _train_vs_test(r: Runs, cells: pd.DataFrame, folder: Path) -> str:
    done = r.done
    if done.empty or done[["train_acc", "test_acc"]].isna().all().all():
        raise Skip("no done run with final accuracies")
    names = [cell_name(dict(zip(r.keys, row, strict=True))) for row in cells[r.keys].itertuples(index=False)]
    labelled = done.assign(cell=[cell_name(dict(zip(r.keys, row, strict=True)))
                                 for row in done[r.keys].itertuples(index=False)])
    long = labelled.melt(id_vars=["cell"], value_vars=["train_acc", "test_acc"], var_name="split", value_name="acc")
    long["split"] = long["split"].map({"train_acc": "train", "test_acc": "test"})
    fig, ax = plt.subplots(figsize=(6.4, 1.0 + 0.34 * len(names)))
    sns.pointplot(data=long, x="acc", y="cell", hue="split", order=[n for n in names if n in set(long["cell"])],
                  hue_order=["train", "test"], errorbar="sd", linestyle="none", dodge=0.4, ax=ax)
    ax.set_xlabel("final accuracy (%)")
    ax.set_ylabel("cell")
    _save(fig, folder, "train_vs_test")
    return ("Mean over seeds with ±1 std. Train accuracy is the running accuracy over the last epoch's training "
            "batches (augmented where the cell augments, model in training mode); test accuracy is measured on "
            "clean test images, final model.")


def _lr_curves(r: Runs, folder: Path) -> str:
    settings = r.runs["config"].map(lambda c: tuple((k, _hashable(c.get(k))) for k in SCHEDULE_FIELDS))
    distinct = sorted(set(settings), key=repr)
    varying = [k for i, k in enumerate(SCHEDULE_FIELDS) if len({s[i][1] for s in distinct}) > 1] or ["schedule"]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    notes = []
    for setting in distinct:
        cfg = dict(setting)
        try:
            fn = make_schedule(cfg["schedule"], base_lr=cfg["lr"], steps_per_epoch=LR_STEPS_PER_EPOCH,
                               epochs=cfg["epochs"], milestones=tuple(cfg["milestones"] or ()), gamma=cfg["gamma"],
                               warmup_epochs=cfg["warmup_epochs"])
        except UserError as err:
            notes.append(f"{cfg['schedule']} not drawn: {err}")
            continue
        steps = cfg["epochs"] * LR_STEPS_PER_EPOCH
        name = cell_name({k: cfg[k] for k in varying})
        ax.plot(np.arange(steps) / LR_STEPS_PER_EPOCH, lr_curve(fn, steps), label=name)
    if not ax.lines:
        raise Skip("; ".join(notes) or "no schedule to draw")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize="small")
    _save(fig, folder, "lr_schedules")
    return "From the stored settings, drawn at 100 steps per epoch." + (" " + "; ".join(notes) if notes else "")


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


# ---- benchmark figures -------------------------------------------------------------------
def _bench_bars(bench: Bench, group: str, table: pd.DataFrame, folder: Path) -> str:
    data = table.dropna(subset=["images_per_s"])
    if data.empty:
        raise Skip("no benchmark of this group reports images_per_s")
    fig, ax = plt.subplots(figsize=(6.4, 1.0 + 0.42 * len(data)))
    sns.barplot(data=data, x="images_per_s", y="variant", hue="role", dodge=False, ax=ax,
                hue_order=[h for h in ("baseline", "candidate") if h in set(data["role"])] or None)
    for i, row in enumerate(data.itertuples(index=False)):
        if np.isfinite(row.speedup):
            ax.annotate(f" {row.speedup:.2f}×", (row.images_per_s, i), va="center", fontsize="small")
    ax.set_xlim(0, data["images_per_s"].max() * 1.2)  # room for the speed-up labels
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_xlabel("images / s (higher is better)")
    ax.set_ylabel("")
    _save(fig, folder, bench.file_name(group))
    return "Speed-up against the group's baseline at the end of each bar."
