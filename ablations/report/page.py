"""The report page: what was run and what it can support, the reading, the tables, the figures.

`sections` builds the page once as content objects (ablations.report.blocks); REPORT.md and
REPORT.html are two renderings of the same list, so they cannot say different things.
Every sentence about results is generated from the tables, so the page cannot claim more
than the store holds. No clock is read here: dates come from the runs themselves, so the
same store always gives the same page. Each caption ends with n and the training budget.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ablations.config import STATUSES, TrainConfig
from ablations.errors import UserError
from ablations.report.bench import Bench, shown
from ablations.report.blocks import Block, Bullets, Facts, Heading, Paragraph, Table, to_markdown
from ablations.report.blocks import Figure as FigureBlock
from ablations.report.budget import caption_context, hardware, training_budget
from ablations.report.factorial import ADJUSTMENT
from ablations.report.format import labels_for
from ablations.report.reading import PERCENT, reading
from ablations.report.runs import Runs, cell_name, label
from ablations.report.study import Study

if TYPE_CHECKING:  # the page only reads figure records; plotting libraries load where figures are drawn
    from ablations.report.figures import Figure

# Native image sizes, for the "image size" line (ablations.data knows them too, but imports torch).
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "synthetic": 28}
FAMILY = (f"Intervals are simultaneous {PERCENT} ({ADJUSTMENT} over the m rows of the table); p is Holm-adjusted "
          "over the same rows (Holm can reject where the Bonferroni interval still touches 0); the unadjusted p is "
          "shown for reference only.")
MODEL = ("From one OLS model of final test accuracy (points) on every axis and all their interactions, with the "
         "seed as an additive block; standard errors HC3 (robust to the unequal seed spread of the cells), "
         "t with the residual df.")


TITLE = "Ablation report"
# Table titles by file name: the page's headings and the LaTeX captions.
TITLES = {
    "notebook": "The notebook says / this study finds", "status": "Status", "problem_runs": "Failed and diverged runs",
    "cells": "Per cell", "anova": "Analysis of variance", "simple_effects": "Simple effects",
    "main_effects": "Main effects", "vs_baseline": "Against the baseline", "pairing": "Pairing by seed",
    "seeds_needed": "Seeds needed", "leaderboard": "Leaderboard",
}
# Drawn by the grid (it needs torch), linked here when it is there.
SAMPLES_FIGURE = "figures/augment_samples.png"


def table_title(name: str) -> str:
    """A table's title from its file name (interaction and benchmark tables are named after their axes/group)."""
    if name.startswith("interaction_"):
        return "Two-way means: " + " x ".join(name.removeprefix("interaction_").split("__"))
    if name.startswith("bench_"):
        return "Throughput: " + name.removeprefix("bench_")
    return TITLES.get(name, name.replace("_", " "))


def render(study: Study | None, bench: Bench | None, bench_figures: list[Figure], formats: tuple[str, ...],
           out: Path) -> str:
    """REPORT.md."""
    return to_markdown(sections(study, bench, bench_figures, formats, out))


def sections(study: Study | None, bench: Bench | None, bench_figures: list[Figure], formats: tuple[str, ...],
             out: Path) -> list[Block]:
    """The page as content objects, in reading order."""
    exports = "; the store as CSV in [export/](export/)" if study else ""
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(f"Tables as {', '.join(formats)} in [tables/](tables/), figures as PNG and SVG in "
                  f"[figures/](figures/){exports}. Regenerate with `ablations report`.")]
    if study:
        blocks += _grid_sections(study, formats, out)
    if bench:
        blocks += _bench_section(bench, bench_figures, formats)
    return blocks


# ---- the grid ----------------------------------------------------------------------------
def _grid_sections(s: Study, formats: tuple[str, ...], out: Path) -> list[Block]:
    t, r = s.tables, s.runs
    context = caption_context(r, t["cells"], training_budget(r))
    target = f"{s.target:.0%}"

    def table(title: str, name: str, note: str, level: int = 2) -> list[Block]:
        labels = labels_for(name, {"epochs_to_target": f"epochs to {target} val acc"})
        return _table(title, name, t[name], formats, f"{note} {context}".strip(), level=level, labels=labels)

    lines: list[Block] = [Heading(2, "What was run"), Facts(_overview(r)), Heading(2, "Reading"),
                          Bullets(reading(s))]
    lines += table(TITLES["notebook"], "notebook",
                   "Each claim of the notebook beside this study's estimate, and the conditions that bound it.")
    lines += table(TITLES["status"], "status", "Runs per status in each cell.")
    if len(t["problem_runs"]):
        lines += table(TITLES["problem_runs"], "problem_runs", "Left out of every statistic below.", level=3)
    lines += table(TITLES["cells"], "cells",
                   "Done runs only; final model on the test set. Mean ± std over seeds; the "
                   f"{PERCENT} interval counts both the seed spread and the test set's binomial noise (logit scale, "
                   "so it stays inside 0-100); a note flags seeds that all agree or an interval of zero width. Best epoch and epochs to "
                   f"{target} use the validation split.")
    if s.model is None:
        lines += [Heading(2, "Factorial analysis"), Paragraph(f"*No factorial model: {s.model_note}.*")]
    else:
        lines += table(TITLES["anova"], "anova",
                       f"`{s.model.formula}`. Type II sums of squares; classical F beside the HC3-robust F "
                       "(seed spread differs between cells); partial eta² = SS / (SS + SS residual). An interaction "
                       "holds when its HC3 p < 0.05.")
        lines += table(TITLES["simple_effects"], "simple_effects",
                       "For each axis in an interaction that holds: its effect within each level of the axes it "
                       f"interacts with, averaged over the others. {MODEL} {FAMILY}")
        lines += table(TITLES["main_effects"], "main_effects",
                       "Each level's least-squares mean (pointwise interval) and its difference to the reference "
                       f"level. A non-empty 'qualified by' means an interaction holds: read the simple effects "
                       f"instead. {MODEL} {FAMILY}")
        base = cell_name(s.baseline) + ("" if s.baseline_found else
                                        " (the default baseline is not in the store; the first cell stands in)")
        lines += table(TITLES["vs_baseline"], "vs_baseline",
                       f"Baseline: {base}. Difference of each cell to it. {MODEL} {FAMILY}")
    lines += table(TITLES["pairing"], "pairing",
                   "For each two-level axis: its difference per seed (averaged over the other axes' cells), the "
                   f"paired {PERCENT} t interval beside the unpaired Welch interval of the same numbers; the ratio is "
                   "what common random numbers buy. Unadjusted intervals: one per axis, not a family.")
    lines += table(TITLES["seeds_needed"], "seeds_needed",
                   "Seeds per cell to detect a difference of 0.5, 1 or 2 points between two cells at 80% power, "
                   "alpha 0.05, two-sided t test (statsmodels power), from the spread this store shows.")
    inter = [k for k in t if k.startswith("interaction_")]
    if inter:
        lines += [Heading(2, "Two-way means"),
                  Paragraph("Mean final test accuracy (%) for each pair of axes, pooled over the rest. "
                            "Parallel rows: no interaction. The tests are in the analysis of variance above.")]
        for name in inter:
            a, b = name.removeprefix("interaction_").split("__")
            lines += table(f"{a} x {b}", name, "", level=3)
    lines += table(TITLES["leaderboard"], "leaderboard", "Cells by mean final test accuracy.")
    lines += [Heading(2, "Figures")]
    for fig in s.figures:
        lines += [Heading(3, fig.title), *_figure(fig)]
    if (out / SAMPLES_FIGURE).is_file():
        samples = FigureBlock(SAMPLES_FIGURE, "Augmentation samples")
        lines += [Heading(3, "Augmentation samples"), samples]
    return lines


def _overview(r: Runs) -> list[tuple[str, str]]:
    runs = r.runs
    prov = [p for p in runs["provenance"] if p]
    counts = runs["status"].value_counts()
    status = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    line, warning = hardware(r)
    source = "declared by the grid" if r.from_grid else "inferred from the configs"
    rows = [("grid", _join(runs["grid"])), ("dataset", _join(c.get("dataset") for c in runs["config"])),
            ("model", _join(c.get("model") for c in runs["config"])),
            ("image size", _join(_image_size(c) for c in runs["config"])),
            ("epochs", _join(c.get("epochs") for c in runs["config"])),
            ("axes", ("; ".join(f"{a}: {', '.join(r.levels(a))}" for a in r.axes) + f" ({source})")
             if r.axes else "none (one cell)"),
            ("seeds", _join(runs["seed"], numeric=True)),
            ("fixed settings", ", ".join(f"{k}={label(v)}" for k, v in sorted(r.fixed.items()))),
            ("runs", f"{len(runs)}: {status}"),
            ("hardware", line), ("torch", _join(p.get("torch") for p in prov)),
            ("commit", _join(p.get("git_commit") for p in prov)),
            ("dates (UTC)", _dates(runs)), ("run time", _run_time(runs))]
    if warning:
        rows.insert(rows.index(("hardware", line)) + 1, ("warning", warning))
    return rows


def _image_size(config: dict) -> str:
    try:
        cfg = TrainConfig.from_mapping(config)
    except (UserError, KeyError, TypeError):
        return "unknown"
    native = NATIVE_SIZE.get(cfg.dataset)
    return f"{cfg.input_size(native)} px" if native or cfg.image_size else "native"


def _dates(runs: pd.DataFrame) -> str:
    start, end = runs["started_at"].min(), runs["finished_at"].max()
    if math.isnan(start) and math.isnan(end):
        return "–"
    return f"{_stamp(start)} to {_stamp(end)}"


def _stamp(t: float) -> str:
    return "?" if math.isnan(t) else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _run_time(runs: pd.DataFrame) -> str:
    total = runs["wall_s"].sum()
    return f"{total:,.0f} s of training summed over runs ({total / 3600:.2f} h)"


# ---- pieces ------------------------------------------------------------------------------
def _table(title: str, name: str, frame: pd.DataFrame, formats: tuple[str, ...], note: str, *, level: int = 2,
           labels: dict[str, str] | None = None) -> list[Block]:
    return [Heading(level, title), Table(name, frame, labels, note, formats)]


def _figure(fig: Figure) -> list[Block]:
    if fig.skipped:
        return [Paragraph(f"*Not drawn: {fig.skipped}.*")]
    return [FigureBlock(f"figures/{fig.name}.png", fig.title, fig.caption, f"figures/{fig.name}.svg")]


def _join(values, numeric: bool = False) -> str:
    distinct = {str(v) for v in values if v is not None and v != ""}
    if not distinct:
        return "–"
    return ", ".join(sorted(distinct, key=(lambda s: (len(s), s)) if numeric else None))


# ---- throughput --------------------------------------------------------------------------
def _bench_section(bench: Bench, figures: list[Figure], formats: tuple[str, ...]) -> list[Block]:
    commit = bench.commit.get("id") or "?"
    dirty = " (uncommitted changes)" if bench.commit.get("dirty") else ""
    lines: list[Block] = [Heading(2, "Throughput"),
                          Paragraph(f"From `{bench.source.name}` (pytest-benchmark, saved {bench.datetime or '?'}, "
                                    f"commit {commit[:12]}{dirty})."),
                          Bullets([f"{k}: {v}" for k, v in bench.machine.items()])]
    if any(table["kernel_ceiling"].notna().any() for table in bench.groups.values()):
        lines.append(Paragraph(
            "utilization %: achieved FLOP/s over the peak of the precision used. kernel ceiling %: the most of "
            "that peak the step could reach if everything but its convolutions and matmuls were free (the "
            "utilization over the share of the step's time those ops take when re-run alone, back to back, beside it)."))
    by_name = {f.name: f for f in figures}
    for group, table in bench.groups.items():
        name = bench.file_name(group)
        lines += _table(group, name, shown(table), formats, _bench_sentence(table), level=3,
                        labels={"images_per_s": "images/s"})
        if name in by_name:
            lines += _figure(by_name[name])
    return lines


def _bench_sentence(table: pd.DataFrame) -> str:
    rated = table.dropna(subset=["images_per_s"])
    if rated.empty:
        return "No benchmark of this group reports images per second."
    top = rated.iloc[0]
    line = f"Fastest: `{top['variant']}` at {top['images_per_s']:,.0f} images/s"
    base = table[table["role"] == "baseline"].sort_values("name")
    if len(base) and not math.isnan(top["speedup"]):
        line += f", {top['speedup']:.2f}× the baseline `{base['variant'].iloc[0]}`"
    elif base.empty:
        line += " (no baseline in this group)"
    return line + "."
