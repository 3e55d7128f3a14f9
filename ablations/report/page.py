"""The report page: the answer first (the effect plot beside the reading in at most ten lines, then
the learning curves), then the evidence in order of how often people need it, long parts collapsed.

`sections` builds the page once as content objects (ablations.report.blocks); REPORT.md and
REPORT.html are two renderings of the same list, so they cannot say different things, and read
in the same order. Every sentence about results is generated from the tables. No clock is read
here: the same store always gives the same page. Each caption ends with n, budget and hardware.
"""

from __future__ import annotations

from pathlib import Path

from ablations.report.bench import Bench
from ablations.report.bench_page import bench_section
from ablations.report.blocks import Answer, Block, Bullets, Facts, Heading, Paragraph, Plot, Section, Table
from ablations.report.blocks import Figure as FigureBlock
from ablations.report.budget import caption_context, training_budget
from ablations.report.factorial import ADJUSTMENT, HC3, HC3_MIN_SEEDS
from ablations.report.format import labels_for
from ablations.report.overview import overview
from ablations.report.reading import answer, reading
from ablations.report.runs import cell_name
from ablations.report.scale import describe
from ablations.report.sentences import PERCENT
from ablations.report.study import Study

TITLE = "Ablation report"
FAMILY = (f"Intervals are simultaneous {PERCENT} ({ADJUSTMENT} over the m rows of one family); p is Holm-adjusted "
          "over the same rows.")
# Table titles by file name: the page's headings and the LaTeX captions.
TITLES = {
    "notebook": "The notebook says / this study finds", "status": "Status", "problem_runs": "Failed and diverged runs",
    "cells": "Per cell", "anova": "Analysis of variance", "simple_effects": "Simple effects",
    "effects": "Effects and verdicts", "vs_baseline": "Against the baseline", "pairing": "Pairing by seed",
    "seeds_needed": "Seeds needed", "leaderboard": "Leaderboard", "sensitivity": "Sensitivity",
    "improvement": "Probability of improvement", "plateau": "Plateau", "budgets": "Budget pilot",
    "val_curves": "Validation accuracy per epoch", "effect_by_epoch": "The effect at every epoch",
    "machines": "Machines and precision",
}
# The columns a table shows at first; the rest sit behind an "All columns" toggle (and in the CSV).
COMPACT = {
    "cells": ("n", "test_acc", "val_acc", "train_acc", "interval_note"),
    "effects": ("kind", "term", "level", "reference", "points", "error_change", "margin", "verdict", "verdict_note"),
    "simple_effects": ("term", "level", "reference", "within", "points", "error_change", "verdict", "verdict_note"),
    "vs_baseline": ("n", "test_acc", "points", "verdict"),
    "sensitivity": ("term", "level", "method", "points", "verdict", "agrees", "note"),
}


KEYED = ("cells", "vs_baseline")
# Drawn by the grid (it needs torch), linked here when it is there.
SAMPLES_FIGURE = "figures/augment_samples.png"


def table_title(name: str) -> str:
    """A table's title from its file name (interaction and benchmark tables are named after their axes/group)."""
    if name.startswith("interaction_"):
        return "Two-way means: " + " x ".join(name.removeprefix("interaction_").split("__"))
    if name.startswith("bench_"):
        return "Throughput: " + name.removeprefix("bench_")
    return TITLES.get(name, name.replace("_", " "))


def sections(study: Study | None, figures: list[Plot], bench: Bench | None, bench_figures: list[Plot],
             formats: tuple[str, ...], out: Path) -> list[Block]:
    """The page as content objects, in reading order."""
    grid = ", ".join(sorted({g for g in study.runs.runs["grid"] if g})) if study else ""
    blocks: list[Block] = [Heading(1, f"{TITLE}: {grid}" if grid else TITLE if study else "Throughput report")]
    if study:
        blocks += _grid_sections(study, figures, formats, out)
    if bench:
        blocks += bench_section(bench, bench_figures, formats)
    exports = "; the store as CSV in [export/](export/)" if study else ""
    blocks.append(Paragraph(f"Tables as {', '.join(formats)} in [tables/](tables/), figures as SVG and PNG in "
                            f"[figures/](figures/){exports}. Regenerate with `ablations report`."))
    return blocks


def _grid_sections(s: Study, figures: list[Plot], formats: tuple[str, ...], out: Path) -> list[Block]:
    t, r = s.tables, s.runs
    context = caption_context(r, t["cells"], training_budget(r))
    target = f"{s.target:.0%}"
    by_name = {f.name: f for f in figures}
    scale = s.model.scale if s.model else s.plan.scale

    def table(name: str, note: str) -> Table:
        labels = labels_for(name, {"epochs_to_target": f"epochs to {target} val acc", "diff": f"estimate ({scale})"})
        keys = tuple(r.keys) if name in KEYED else ()  # a cell's coordinates always show
        compact = (*keys, *COMPACT[name]) if name in COMPACT else ()
        return Table(name, t[name], labels, f"{note} {context}".strip(), formats, compact)

    def section(name: str, note: str, collapsed: bool = True, extra: list[Block] | None = None,
                level: int = 2) -> list[Block]:
        if name not in t or t[name].empty:
            return []
        return [Section(TITLES[name], [*(extra or []), table(name, note)], collapsed, level)]

    # a budget pilot leads with the validation curves its answer is read from
    first, second = ("learning_curves", "effects") if len(t.get("budgets", ())) else ("effects", "learning_curves")
    blocks: list[Block] = [Answer([*by_name[first].blocks(), Bullets(answer(s))]),
                           *by_name[second].blocks(),
                           Section("Full reading", [Bullets(reading(s))], collapsed=True),
                           Section("What was run", [Facts(overview(r))], collapsed=True)]
    blocks += section("cells", f"Done runs only; final model. Mean ± std over seeds; the {PERCENT} interval counts "
                      "the seed spread and the test set's binomial noise on the logit scale, so it stays inside 0-100. "
                      f"Best epoch and epochs to {target} use the validation split.", collapsed=False)
    if s.model is None:
        blocks.append(Section("Factorial analysis", [Paragraph(f"*No factorial model: {s.model_note}.*")]))
    else:
        blocks += section("effects", _model_note(s), collapsed=False)
    blocks.append(Section("The effect at every budget", [
        *by_name["effect_by_epoch"].blocks(),
        *section("effect_by_epoch", f"From validation accuracy, on {describe(scale)}; one family per epoch.", level=3),
        *section("val_curves", f"Mean validation accuracy over seeds with the {PERCENT} t interval of the seeds' mean "
                 "on the logit scale.", level=3)]))
    blocks += section("plateau", "Rise of the least-squares line through each cell's seed-mean validation accuracy "
                      f"over the epochs of the last fifth of training, over that span; plateaued: a rise under "
                      f"{s.plan.plateau_points:g} points. The 95% CI is that rise's t interval from the seeds' own "
                      "points (one line, an intercept per seed): the gain is shown under the plateau when all of that "
                      "interval lies under it, shown at or over it when all of it does, else not resolved. "
                      "Sensitivity, not a verdict: the rise of a Theil–Sen line (the median of pairwise slopes) "
                      "through the same points, which one epoch's dip barely moves, with its 95% interval. The "
                      "test set plays no part.",
                      extra=[Table("budgets", t["budgets"], None, "Per budget: cells that plateaued.", formats)]
                      if len(t.get("budgets", ())) else [])
    if s.model is not None:
        blocks += section("anova", f"`{s.model.formula}`. Type II sums of squares; classical F beside the HC3 F; "
                          "partial eta² = SS / (SS + SS residual). Descriptive: the verdicts are in Effects.")
        blocks += section("simple_effects", "For each factor in an interaction not shown negligible: its effect "
                          f"within each level of the factors it interacts with. {FAMILY}")
        blocks += section("sensitivity", "Each effect under every other reasonable analysis. Same verdict: whether "
                          "it agrees with the primary row; a note says why two intervals differ where they do.")
        blocks += section("improvement", "P(level > reference): the share of runs matched on seed and on every "
                          "other axis in which the level beats the reference (ties count half); percentile "
                          "bootstrap over seeds, 2,000 resamples, fixed generator seed.")
        base = cell_name(s.baseline) + ("" if s.baseline_found else
                                        " (the default baseline is not in the store; the first cell stands in)")
        blocks += section("vs_baseline", f"Baseline: {base}. Difference of each cell to it, from the model. {FAMILY}")
    blocks += section("seeds_needed", "Seeds per cell to detect a difference of 0.5, 1 or 2 points between two cells "
                      "at 80% power, alpha 0.05, two-sided t test (statsmodels power), from the spread this store "
                      "shows.")
    blocks += section("pairing", f"For each two-level axis: its difference per seed in points, the paired {PERCENT} t "
                      "interval beside the unpaired Welch interval of the same numbers. These show what pairing buys: "
                      "unadjusted, raw points and seeds - 1 df, they are wider or narrower than the model's "
                      "intervals for those reasons; the verdicts are in Effects.")
    blocks += section("status", "Runs per status in each cell.",
                      extra=[table("problem_runs", "Left out of every statistic.")] if len(t["problem_runs"]) else [])
    blocks += section("machines", "Runs per device, resolved precision and CPU capability.")
    blocks += section("notebook", "Each claim of the notebook beside this study's estimate.")
    inter = [k for k in t if k.startswith("interaction_")]
    if inter:
        blocks.append(Section("Two-way means", [Paragraph("Mean final test accuracy (%) for each pair of axes, pooled "
                                                          "over the rest. Parallel rows: no interaction."),
                                                *[table(n, "") for n in inter]], collapsed=True))
    blocks += section("leaderboard", "Cells by mean final test accuracy.")
    more = [b for name in ("heatmap_test_acc", "train_vs_test", "lr_schedules") for b in by_name[name].blocks()]
    if (out / SAMPLES_FIGURE).is_file():
        more.append(FigureBlock(SAMPLES_FIGURE, "Augmentation samples", "Augmentation samples."))
    blocks.append(Section("More figures", more, collapsed=True))
    return blocks


def _model_note(s: Study) -> str:
    m = s.model
    cov = ("HC3 standard errors" if m.covariance == HC3 else
           f"classical standard errors (fewer than {HC3_MIN_SEEDS} seeds per cell: too few for a robust HC3 test)")
    return (f"`{m.formula}`, Type II; the response on {describe(m.scale)}; {cov}. Verdict: differs (Holm p < 0.05), "
            "else equivalent within the margin (TOST, Holm p < 0.05), else not resolved. Main effects and "
            f"interactions are two families. {FAMILY}")
