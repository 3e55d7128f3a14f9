"""The answer's two figures and the effect at every budget, drawn from the study's tables.

- `effects`: each effect with its simultaneous interval on the study's scale, points at the grand
  mean on the top axis, a zero line, the equivalence margins shaded, the verdict written beside it.
- `curves`: validation accuracy per epoch for every cell (mean over seeds, band: its interval),
  one colour per level (`palette`), labelled at the line's end, the step decay marked.
- `effect_by_epoch`: each factor's effect at every epoch, from validation, with its interval.

Each returns its caption; `figures` saves and names them. No pyplot state leaks: the caller
closes every figure.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ablations.errors import UserError
from ablations.report import scale as sc
from ablations.report.analysis import DIFFERS, INTERACTION, MAIN
from ablations.report.palette import colours, verdict_colour
from ablations.report.runs import Runs
from ablations.schedules import lr_curve, make_schedule

STEPS_PER_EPOCH = 100  # resolution at which a schedule is read for its decays
FACETS = ("augment", "weight_decay")  # columns, rows; the hue is the schedule where it varies
MIN_BAND_SEEDS = 3  # with two seeds the t interval of a mean is +-12.7 standard errors: a band over everything


class Skip(Exception):
    """This store cannot support the figure; the message says why, for the page."""


# ---- the effect plot -----------------------------------------------------------------------
def effects(table: pd.DataFrame | None, centre: float, scale: str, why_none: str) -> tuple[plt.Figure, str]:
    if table is None or table.empty:
        raise Skip(f"no factorial model: {why_none}")
    rows = table[(table["kind"] == MAIN) | ((table["kind"] == INTERACTION) & (table["verdict"] == DIFFERS))]
    rows = rows.iloc[::-1]  # the first effect on top
    fig, ax = plt.subplots(figsize=(6.6, 0.9 + 0.42 * len(rows)))
    y = np.arange(len(rows))
    for i, row in enumerate(rows.itertuples(index=False)):
        colour = verdict_colour(row.verdict)
        bound = sc.from_points(row.margin, centre, scale) if math.isfinite(row.margin) else math.nan
        if math.isfinite(bound):
            ax.fill_betweenx([i - 0.32, i + 0.32], -bound, bound, color="#009E73", alpha=0.12, lw=0)
        ax.plot([row.diff_ci_low, row.diff_ci_high], [i, i], color=colour, lw=2.2, solid_capstyle="butt")
        ax.plot([row.diff], [i], "o", color=colour, ms=6)
        noted = " *" if getattr(row, "verdict_note", "") else ""  # a verdict its interval seems to contradict
        ax.annotate(f" {row.verdict}{noted}", (1.0, i), xycoords=("axes fraction", "data"), va="center",
                    fontsize=8.5, color=colour, annotation_clip=False)
    ax.axvline(0, color="#444444", lw=0.8)
    per_term = table["term"].value_counts()
    ax.set_yticks(y, [_row_label(r, per_term[r.term]) for r in rows.itertuples(index=False)], fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    if scale == sc.LOGIT:
        ax.set_xlabel("effect on the logit scale (log odds ratio of a correct answer)")
        top = ax.secondary_xaxis("top", functions=(lambda d: sc.to_points(d, centre, sc.LOGIT),
                                                   lambda p: sc.signed_from_points(p, centre)))
        top.set_xlabel(f"points of accuracy at the grand mean ({sc.PCT * sc.expit(centre):.2f}%)", fontsize=9)
    else:
        ax.set_xlabel("effect (points of accuracy)")
    ax.grid(axis="y", visible=False)
    caption = (f"Each main effect (and each interaction that differs) with its simultaneous {95}% interval from "
               f"the primary model, on {sc.describe(scale)}; green band: the equivalence margin where the grid "
               "declares one; the verdict beside each.")
    if "verdict_note" in rows and rows["verdict_note"].fillna("").astype(bool).any():
        caption += (" *: the verdict comes from the declared test (Holm's step-down test, or the TOST), which "
                    "disagrees with this interval near the boundary; the note in the effects table says why.")
    return fig, caption


def _row_label(row, rows_of_term: int) -> str:
    """'augment: notebook vs none'; an interaction by its factors, with its levels where it has several rows."""
    if row.kind == MAIN:
        return f"{row.term}: {row.level} vs {row.reference}"
    return f"{row.term}: {row.level}" if rows_of_term > 1 else row.term


# ---- learning curves -----------------------------------------------------------------------
def roles(r: Runs) -> tuple[str | None, str | None, str | None, str | None]:
    """(column facet, row facet, colour, line style) axes of a cell-per-line figure."""
    hue = "schedule" if "schedule" in r.axes else (r.axes[-1] if r.axes else None)
    col, row = (a if a in r.axes and a != hue else None for a in FACETS)
    rest = [a for a in r.axes if a not in (col, row, hue)]
    return col, row, hue, rest[0] if rest else None


def curves(r: Runs, table: pd.DataFrame) -> tuple[plt.Figure, str]:
    if table.empty:
        raise Skip("no done run has per-epoch validation records (none is done yet, or the store was written "
                   "before the validation split)")
    col, row, hue, style = roles(r)
    cols, rows = (r.levels(col) if col else [None]), (r.levels(row) if row else [None])
    palette = colours(r)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(0.6 + 3.3 * len(cols), 0.5 + 2.3 * len(rows)),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    keys = [k for k in (hue, style) if k]
    low, high = float(table["val_acc"].min()), float(table["val_acc"].max())
    pad = max(0.5, 0.15 * (high - low))  # the means decide the scale; a wide band runs off it, not the lines
    axes[0][0].set_ylim(low - pad, min(100.0, high + pad))  # before the end labels, which are spaced within it
    for (i, rl), (j, cl) in ((a, b) for a in enumerate(rows) for b in enumerate(cols)):
        ax = axes[i][j]
        part = _select(table, {col: cl, row: rl})
        ends = []
        for key, line in (part.groupby(keys, observed=True, sort=True) if keys else [((), part)]):
            key = key if isinstance(key, tuple) else (key,)
            line = line.groupby("epoch", sort=True)[["n", "val_acc", "val_acc_ci_low", "val_acc_ci_high"]].agg(
                {"n": "min", "val_acc": "mean", "val_acc_ci_low": "mean", "val_acc_ci_high": "mean"})
            colour = palette[hue][str(key[0])] if hue else "#0072B2"
            dashes = "--" if style and str(key[-1]) != r.levels(style)[0] else "-"
            ax.plot(line.index, line["val_acc"], dashes, color=colour, lw=1.6, marker="o", ms=2.5)
            banded = line["n"] >= MIN_BAND_SEEDS
            ax.fill_between(line.index, line["val_acc_ci_low"], line["val_acc_ci_high"], where=banded.to_numpy(),
                            color=colour, alpha=0.15, lw=0)
            ends.append((line.index[-1], line["val_acc"].iloc[-1], " ".join(map(str, key)), colour))
        for epoch in decays(r):
            ax.axvline(epoch, color=palette.get("schedule", {}).get("step", "#444444"), lw=0.8, ls=":")
        if j == len(cols) - 1:
            _label_ends(ax, ends)
        ax.set_title(" · ".join(f"{a} = {v}" for a, v in ((col, cl), (row, rl)) if a), fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy (%)")
    named = " and ".join(f"{k}" for k in keys) or "cell"
    marked = " Dotted: the step schedule's decay." if decays(r) else ""
    return fig, (f"Mean over seeds (line) and the 95% t interval of the seeds' mean (band, on the logit scale, "
                 f"drawn where {MIN_BAND_SEEDS} or more seeds are done), done runs only; colour{' and dash' if style else ''}"
                 f": {named}, labelled at the line's end.{marked}")


def _select(table: pd.DataFrame, where: dict[str | None, str | None]) -> pd.DataFrame:
    """Rows whose axes have the given levels; a None axis selects nothing."""
    mask = np.ones(len(table), dtype=bool)
    for axis, level in where.items():
        if axis is not None:
            mask &= (table[axis].astype(str) == str(level)).to_numpy()
    return table[mask]


def _label_ends(ax: plt.Axes, ends: list[tuple[float, float, str, str]]) -> None:
    """Direct labels at the right end of each line, nudged apart so they do not overlap."""
    low, high = ax.get_ylim()
    gap = (high - low) * 0.07
    ends = sorted(ends, key=lambda e: e[1])
    placed: list[float] = []
    for end in ends:
        placed.append(max([end[1], *[p + gap for p in placed]]) if placed else end[1])
    # a stack pushed past the top slides down as a whole, so every label stays beside its axes
    shift = max(0.0, placed[-1] - (high - gap / 2)) if placed else 0.0
    for (x, _, text, colour), y in zip(ends, placed, strict=True):
        y = max(low + gap / 2, y - shift)
        ax.annotate(f" {text}", (x, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8,
                    color=colour, annotation_clip=False)


def decays(r: Runs) -> list[float]:
    """Epochs at which a stored schedule cuts the learning rate by half or more (the step's decay)."""
    found = set()
    for cfg in r.runs["config"]:
        if cfg.get("schedule") != "step":
            continue
        try:
            fn = make_schedule("step", base_lr=cfg["lr"], steps_per_epoch=STEPS_PER_EPOCH, epochs=cfg["epochs"],
                               milestones=tuple(cfg.get("milestones") or ()), gamma=cfg.get("gamma"),
                               warmup_epochs=cfg.get("warmup_epochs", 1.0))
        except (UserError, KeyError, TypeError):
            continue
        lr = np.asarray(lr_curve(fn, cfg["epochs"] * STEPS_PER_EPOCH))
        found |= {round(float(i + 1) / STEPS_PER_EPOCH, 2) for i in np.flatnonzero(lr[1:] <= lr[:-1] / 2)}
    return sorted(found)


# ---- the effect at every budget ------------------------------------------------------------
def effect_by_epoch(r: Runs, table: pd.DataFrame, margins: dict[str, float]) -> tuple[plt.Figure, str]:
    if table.empty:
        raise Skip("no validation records per epoch, or no factor to estimate")
    panels = list(dict.fromkeys(zip(table["axis"], table["level"], table["reference"], strict=True)))
    fig, axes = plt.subplots(1, len(panels), figsize=(0.6 + 3.0 * len(panels), 2.9), squeeze=False, sharey=False,
                             layout="constrained")
    budgets = list(dict.fromkeys(table["budget"])) if "budget" in table else [None]
    for ax, (axis, level, ref) in zip(axes[0], panels, strict=True):
        for k, budget in enumerate(budgets):
            part = _select(table, {"axis": axis, "level": level, "budget" if budget is not None else None: budget})
            colour = colours(r).get(axis, {}).get(level, "#0072B2")
            ax.plot(part["epoch"], part["points"], "-" if k == 0 else "--", color=colour, marker="o", ms=2.5,
                    label=f"{budget} epochs" if budget is not None else None)
            ax.fill_between(part["epoch"], part["points_ci_low"], part["points_ci_high"], color=colour, alpha=0.15,
                            lw=0)
        margin = margins.get(axis, math.nan)
        if math.isfinite(margin):
            ax.axhspan(-margin, margin, color="#009E73", alpha=0.1, lw=0)
        ax.axhline(0, color="#444444", lw=0.8)
        if axis == "schedule":
            for epoch in decays(r):
                ax.axvline(epoch, color="#444444", lw=0.8, ls=":")
        ax.set_title(f"{axis}: {level} vs {ref}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if budgets != [None]:
            ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("effect on validation accuracy (points)")
    return fig, ("Each factor's main effect on validation accuracy at every epoch, from the primary model fitted to "
                 "that epoch, in points at that epoch's grand mean, with its simultaneous 95% interval; green: the "
                 "margin. The step schedule's effect is only defined at the end of its own schedule.")
