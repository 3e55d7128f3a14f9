"""The figures of a grid and of a benchmark run, as SVG (the HTML page) and PNG (REPORT.md).

Each figure is drawn from the same DataFrames as the tables. A figure the store cannot support
(say, a heatmap over weight decay x schedule when only augmentation varies) is skipped with a
reason that the page prints; drawing never stops the report. The answer's figures come first:
the effect plot, then the learning curves (`plots`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablations.errors import UserError  # noqa: E402
from ablations.report import plots  # noqa: E402
from ablations.report.bench import Bench  # noqa: E402
from ablations.report.blocks import Plot  # noqa: E402
from ablations.report.budget import caption_context, training_budget  # noqa: E402
from ablations.report.palette import OKABE_ITO, colours  # noqa: E402
from ablations.report.plots import Skip  # noqa: E402
from ablations.report.runs import Runs, cell_name  # noqa: E402
from ablations.report.study import Study  # noqa: E402
from ablations.schedules import lr_curve, make_schedule  # noqa: E402

DPI = 110
# Fixed SVG element ids and no date: the same store gives byte-identical files.
RC = {"svg.hashsalt": "ablations-report", "svg.fonttype": "none", "font.size": 9}
SCHEDULE_FIELDS = ("schedule", "lr", "epochs", "milestones", "gamma", "warmup_epochs")
FIRST = ("effects", "learning_curves")  # the answer's figures, by name


def draw_grid_figures(study: Study, folder: Path) -> list[Plot]:
    """Every figure of a grid, in page order (the answer's two first); each caption ends with n,
    the budget and the hardware."""
    r, t = study.runs, study.tables
    centre = study.model.centre if study.model else 0.0
    scale = study.model.scale if study.model else study.plan.scale
    specs: list[tuple[str, str, Callable[[], tuple[plt.Figure, str]]]] = [
        ("effects", "What each factor does", lambda: plots.effects(t.get("effects"), centre, scale, study.model_note)),
        ("learning_curves", "Validation accuracy per epoch", lambda: plots.curves(r, t["val_curves"])),
        ("effect_by_epoch", "The effect at every budget",
         lambda: plots.effect_by_epoch(r, t["effect_by_epoch"], study.plan.margins)),
        ("heatmap_test_acc", "Final test accuracy: weight decay x schedule", lambda: _heatmap(r)),
        ("train_vs_test", "Final train and test accuracy per cell", lambda: _train_vs_test(r, t["cells"])),
        ("lr_schedules", "Learning rate of each schedule", lambda: _lr_curves(r)),
    ]
    context = caption_context(r, t["cells"], training_budget(r))
    return [_attempt(name, title, draw, folder, context) for name, title, draw in specs]


def draw_bench_figures(bench: Bench, folder: Path) -> list[Plot]:
    return [_attempt("bench_throughput", "Throughput per variant", lambda: _bench_bars(bench), folder)]


def _attempt(name: str, title: str, draw: Callable[[], tuple[plt.Figure, str]], folder: Path,
             context: str = "") -> Plot:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with sns.axes_style("whitegrid"), plt.rc_context(RC):
            fig, caption = draw()
            fig.savefig(folder / f"{name}.png", dpi=DPI, bbox_inches="tight")
            fig.savefig(folder / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
    except Skip as why:
        return Plot(name, title, skipped=str(why))
    except Exception as err:  # a plotting bug must cost one figure, not the report of a finished grid
        return Plot(name, title, skipped=f"a plotting error ({type(err).__name__}: {err})")
    finally:
        plt.close("all")
    return Plot(name, title, f"{caption} {context}".strip(), (folder / f"{name}.png", folder / f"{name}.svg"))


def _pooled(r: Runs, shown: tuple[str, ...]) -> str:
    rest = [a for a in r.axes if a not in shown]
    return f" Pooled over {', '.join(rest)}." if rest else ""


def _heatmap(r: Runs) -> tuple[plt.Figure, str]:
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
    return fig, ("Mean final test accuracy (%) of done runs, one colour scale (viridis, readable in grey) for all "
                 f"panels; blank: no done run.{_pooled(r, ('augment', 'weight_decay', 'schedule'))}")


def _train_vs_test(r: Runs, cells: pd.DataFrame) -> tuple[plt.Figure, str]:
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
                  hue_order=["train", "test"], palette=[OKABE_ITO[1], OKABE_ITO[0]], errorbar="sd",
                  linestyle="none", dodge=0.4, ax=ax)
    ax.set_xlabel("final accuracy (%)")
    ax.set_ylabel("")
    return fig, ("Mean over seeds with ±1 std. Train accuracy is the running accuracy over the last epoch's training "
                 "batches (augmented where the cell augments, model in training mode); test accuracy is measured on "
                 "clean test images, final model.")


def _lr_curves(r: Runs) -> tuple[plt.Figure, str]:
    settings = r.runs["config"].map(lambda c: tuple((k, _hashable(c.get(k))) for k in SCHEDULE_FIELDS))
    distinct = sorted(set(settings), key=repr)
    varying = [k for i, k in enumerate(SCHEDULE_FIELDS) if len({s[i][1] for s in distinct}) > 1] or ["schedule"]
    palette = colours(r).get("schedule", {})
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    notes = []
    for setting in distinct:
        cfg = dict(setting)
        try:
            fn = make_schedule(cfg["schedule"], base_lr=cfg["lr"], steps_per_epoch=plots.STEPS_PER_EPOCH,
                               epochs=cfg["epochs"], milestones=tuple(cfg["milestones"] or ()), gamma=cfg["gamma"],
                               warmup_epochs=cfg["warmup_epochs"])
        except UserError as err:
            notes.append(f"{cfg['schedule']} not drawn: {err}")
            continue
        steps = cfg["epochs"] * plots.STEPS_PER_EPOCH
        ax.plot(np.arange(steps) / plots.STEPS_PER_EPOCH, lr_curve(fn, steps), color=palette.get(cfg["schedule"]),
                label=cell_name({k: cfg[k] for k in varying}))
    if not ax.lines:
        raise Skip("; ".join(notes) or "no schedule to draw")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize="small", frameon=False)
    return fig, ("From the stored settings, drawn at 100 steps per epoch; each schedule in its colour of every "
                 "figure." + (" " + "; ".join(notes) if notes else ""))


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _bench_bars(bench: Bench) -> tuple[plt.Figure, str]:
    """One row per benchmark group: every variant's images/s relative to the group's notebook-style
    baseline (log scale, the baseline at 1×), the fastest named with its speed-up and images/s."""
    groups = [(g, t.dropna(subset=["images_per_s", "speedup"])) for g, t in bench.groups.items()]
    groups = [(g, t) for g, t in groups if len(t)]
    if not groups:
        raise Skip("no benchmark group has a baseline and images_per_s")
    fig, ax = plt.subplots(figsize=(7.4, 0.8 + 0.32 * len(groups)))
    for i, (_, data) in enumerate(groups):
        base = data["role"] == "baseline"
        ax.scatter(data.loc[~base, "speedup"], [i] * int((~base).sum()), s=22, color=OKABE_ITO[0], zorder=3)
        ax.scatter(data.loc[base, "speedup"], [i] * int(base.sum()), s=30, marker="D", color=OKABE_ITO[1], zorder=3)
        top = data.iloc[0]  # fastest first
        ax.annotate(f"  {top['variant']}: {top['speedup']:.2f}×, {top['images_per_s']:,.0f} img/s",
                    (top["speedup"], i), va="center", fontsize=7.5)
    ax.set_xscale("log")
    ax.axvline(1.0, color=OKABE_ITO[1], lw=0.8)
    ax.set_yticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
    ax.invert_yaxis()
    low = min(float(t["speedup"].min()) for _, t in groups)
    high = max(float(t["speedup"].max()) for _, t in groups)
    ax.set_xlim(low / 1.5, high * 12)  # room on the right for the fastest variant's label
    ax.set_xlabel("images/s relative to the group's baseline (log scale; higher is faster)")
    return fig, ("Every variant's throughput relative to its group's notebook-style baseline (orange diamond, 1×); "
                 "the fastest variant of each group named with its speed-up and images/s. Tables per group below.")
