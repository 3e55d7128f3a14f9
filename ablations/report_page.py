"""REPORT.md: what was run, the tables, the figures, and a plain-words reading of the numbers.

Every sentence about results is generated from the tables, so the page cannot claim more
than the store holds. No clock is read here: dates come from the runs themselves, so the
same store always gives the same page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ablations import stats
from ablations.config import TrainConfig
from ablations.errors import UserError
from ablations.report_bench import Bench, shown
from ablations.report_format import markdown
from ablations.report_tables import Runs, cell_name

if TYPE_CHECKING:  # the page only reads figure records; plotting libraries load where figures are drawn
    from ablations.report_figures import Figure

# Native image sizes, for the "image size" line (ablations.data knows them too, but imports torch).
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "synthetic": 28}
LEVEL = f"{stats.LEVEL:.0%}"


@dataclass
class GridPart:
    """What the page says about a grid: its runs, the tables by file name, the figures."""

    runs: Runs
    tables: dict[str, pd.DataFrame]
    baseline: dict[str, str]
    baseline_found: bool  # False: the default baseline was not in the store, the first cell stood in
    target: float
    figures: list[Figure] = field(default_factory=list)


def render(grid: GridPart | None, bench: Bench | None, bench_figures: list[Figure], formats: tuple[str, ...],
           out: Path) -> str:
    lines = ["# Ablation report", ""]
    exports = "; the store as CSV in [export/](export/)" if grid else ""
    lines += [f"Tables as {', '.join(formats)} in [tables/](tables/), figures as PNG and SVG in "
              f"[figures/](figures/){exports}. Regenerate with `python -m ablations.report`.", ""]
    if grid:
        lines += _grid_sections(grid, formats, out)
    if bench:
        lines += _bench_section(bench, bench_figures, formats)
    return "\n".join(lines).rstrip() + "\n"


# ---- the grid ----------------------------------------------------------------------------
def _grid_sections(g: GridPart, formats: tuple[str, ...], out: Path) -> list[str]:
    t = g.tables
    target = f"{g.target:.0%}"
    labels = {"epochs_to_target": f"epochs to {target} test acc"}
    lines = ["## What was run", ""] + [f"- **{k}**: {v}" for k, v in _overview(g.runs)] + ["", "## Reading", ""]
    lines += [f"- {s}" for s in reading(g)] + [""]
    lines += _table("Status", "status", t["status"], formats, "Runs per status in each cell.")
    if len(t["problem_runs"]):
        lines += _table("Failed and diverged runs", "problem_runs", t["problem_runs"], formats,
                        "Left out of every statistic below.", level=3)
    lines += _table("Per cell", "cells", t["cells"], formats,
                    f"Done runs only. Mean ± std over seeds, {LEVEL} t interval of the mean; the gap is train minus "
                    f"test accuracy; epochs to {target}: first epoch reaching it, mean over the seeds that did.",
                    labels=labels)
    base = cell_name(g.baseline) + ("" if g.baseline_found else
                                    " (the default baseline is not in the store; the first cell stands in)")
    lines += _table("Against the baseline", "vs_baseline", t["vs_baseline"], formats,
                    f"Baseline: {base}. Difference of mean final test accuracy (points), Welch's t test and its "
                    f"{LEVEL} interval; p Holm-adjusted over the rows.")
    lines += _table("Main effects", "main_effects", t["main_effects"], formats,
                    "Each level over every done run at it, pooled over the other axes; difference to the baseline's "
                    "level with Welch's test; p Holm-adjusted over all rows.")
    inter = [k for k in t if k.startswith("interaction_")]
    if inter:
        lines += ["## Interactions", "", "Mean final test accuracy (%) for each pair of axes, pooled over the rest. "
                  "Parallel rows: no interaction.", ""]
        for name in inter:
            a, b = name.removeprefix("interaction_").split("__")
            lines += _table(f"{a} x {b}", name, t[name], formats, "", level=3)
    lines += _table("Leaderboard", "leaderboard", t["leaderboard"], formats, "Cells by mean final test accuracy.")
    lines += ["## Figures", ""]
    for fig in g.figures:
        lines += _figure(fig)
    if (out / "figures" / "augment_samples.png").is_file():
        lines += ["### Augmentation samples", "", "![Augmentation samples](figures/augment_samples.png)", ""]
    return lines


def _overview(r: Runs) -> list[tuple[str, str]]:
    runs = r.runs
    prov = [p for p in runs["provenance"] if p]
    counts = runs["status"].value_counts()
    status = ", ".join(f"{counts[s]} {s}" for s in ("done", "diverged", "failed", "running", "queued") if s in counts)
    rows = [("grid", _join(runs["grid"])), ("dataset", _join(c.get("dataset") for c in runs["config"])),
            ("model", _join(c.get("model") for c in runs["config"])),
            ("image size", _join(_image_size(c) for c in runs["config"])),
            ("epochs", _join(c.get("epochs") for c in runs["config"])),
            ("axes", "; ".join(f"{a}: {', '.join(r.levels(a))}" for a in r.axes) or "none (one cell)"),
            ("seeds", _join(runs["seed"], numeric=True)),
            ("fixed settings", ", ".join(f"{k}={_value(v)}" for k, v in sorted(r.fixed.items()))),
            ("runs", f"{len(runs)}: {status}"),
            ("hardware", _join(p.get("device_name") for p in prov)), ("torch", _join(p.get("torch") for p in prov)),
            ("commit", _join(p.get("git_commit") for p in prov)),
            ("dates (UTC)", _dates(runs)), ("run time", _run_time(runs))]
    return rows


def _image_size(config: dict) -> str:
    try:
        cfg = TrainConfig.from_mapping(config)
    except UserError:
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


def reading(g: GridPart) -> list[str]:
    """The effects in words, each sentence built from a table row."""
    t, r = g.tables, g.runs
    n = len(r.runs)
    done = int((r.runs["status"] == "done").sum())
    used = "; statistics use those." if done else "."
    out = [f"{done} of {n} runs are done{used} " + _problems(t["problem_runs"])]
    if done == 0:
        return out + ["No run is done yet: nothing to compare."]
    if t["cells"]["n"].max() <= 1:
        out.append("One seed per cell: no intervals. Per-cell std, confidence intervals and tests need two or more "
                   "seeds per cell (run the grid with `--seeds 3`).")
    if not g.baseline_found:
        out.append(f"The default baseline cell is not in the store; {cell_name(g.baseline)} stands in.")
    effects = t["main_effects"]
    pooled = ", pooled over the other axes" if len(r.axes) > 1 else ""
    for axis in r.axes:
        out += _effect_sentences(axis, effects[effects["axis"] == axis], pooled)
    out += _best_cell(t["leaderboard"], t["vs_baseline"], r.keys, g.baseline)
    if "augment" in r.axes:
        gaps = r.done.groupby("augment", observed=True, sort=True)["gap"].mean()
        out.append("Mean train − test accuracy gap by augmentation: "
                   + ", ".join(f"`{k}` {v:+.2f} points" for k, v in gaps.items()) + ".")
    out.append(_fastest(t["cells"], r.keys, f"{g.target:.0%}"))
    return out


def _fastest(cells: pd.DataFrame, keys: list[str], target: str) -> str:
    """The cell whose every seed reached the target soonest; partial cells are only counted."""
    cells = cells[cells["n"] > 0]
    every = cells[cells["reached"] == cells["n"]]
    never = int((cells["reached"] == 0).sum())
    some = len(cells) - len(every) - never
    tail = f"{never} of {len(cells)} cells never reached it" + (f", {some} only in some seeds" if some else "")
    if every.empty:
        return f"No cell reached {target} test accuracy in every seed; {tail}."
    fast = every.sort_values("epochs_to_target", kind="stable").iloc[0]
    return (f"Fastest to {target} test accuracy in every seed: {_cell(fast, keys)}, after "
            f"{fast['epochs_to_target']:.1f} epochs on average; {tail}.")


def _problems(problems: pd.DataFrame) -> str:
    counts = problems["status"].value_counts()
    if problems.empty:
        return "No run failed or diverged."
    parts = [f"{counts.get(s, 0)} {s}" for s in ("diverged", "failed")]
    return f"{' and '.join(parts)} (listed under Status)."


def _effect_sentences(axis: str, part: pd.DataFrame, pooled: str) -> list[str]:
    """Significant levels as changes against the reference level; the others said to not differ."""
    ref = part["reference"].iloc[0]
    n_ref = int(part.loc[part["level"] == ref, "n"].sum())
    rows = part[part["level"] != ref]
    if rows.empty or n_ref == 0:
        return []

    def detail(row: pd.Series) -> str:
        return f"{row['diff']:+.2f} points ({_test(row)}; n = {int(row['n'])} vs {n_ref})"

    sig = rows[rows["significant"]]
    if sig.empty:
        listed = ", ".join(f"`{row['level']}` {detail(row)}" for _, row in rows.iterrows())
        return [f"No `{axis}` level differs significantly from `{ref}`: {listed}."]
    out = [f"`{axis}` = `{row['level']}` changes final test accuracy by {detail(row)} against `{ref}`{pooled}."
           for _, row in sig.iterrows()]
    out += [f"`{axis}` = `{row['level']}` does not differ significantly from `{ref}`: {detail(row)}."
            for _, row in rows[~rows["significant"]].iterrows()]
    return out


def _best_cell(board: pd.DataFrame, diffs: pd.DataFrame, keys: list[str], base: dict[str, str]) -> list[str]:
    if board.empty:
        return []
    best = board.iloc[0]
    ci = "" if math.isnan(best["test_acc_ci_low"]) else f", {LEVEL} CI {_ci(best, 'test_acc_ci')}"
    line = f"Best cell: {_cell(best, keys)}, {best['test_acc']:.2f}% final test accuracy (n = {int(best['n'])}{ci})"
    match = diffs
    for k in keys:
        match = match[match[k] == best[k]]
    if len(match):
        d = match.iloc[0]
        verdict = "significantly" if d["significant"] else "not significantly"
        line += f"; {d['diff']:+.2f} points against the baseline ({_test(d)})"
        line += "" if math.isnan(d["p"]) else f", {verdict} different"
    elif all(best[k] == v for k, v in base.items()):
        line += "; it is the baseline cell"
    return [line + "."]


def _cell(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}=`{row[k]}`" for k in keys)


def _ci(row: pd.Series, prefix: str = "diff_ci") -> str:
    low, high = row[f"{prefix}_low"], row[f"{prefix}_high"]
    return "n/a" if math.isnan(low) else f"{low:+.2f} to {high:+.2f}" if prefix == "diff_ci" else f"{low:.2f} to {high:.2f}"


def _test(row: pd.Series) -> str:
    """'95% CI a to b; Holm-adjusted p = x' for a difference row, or why there is no test."""
    if math.isnan(row["p"]):
        return "no test: fewer than two runs on a side, or no spread"
    p = row["p_holm"]
    return f"{LEVEL} CI {_ci(row)}; Holm-adjusted " + ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


# ---- pieces ------------------------------------------------------------------------------
def _table(title: str, name: str, frame: pd.DataFrame, formats: tuple[str, ...], note: str, *, level: int = 2,
           labels: dict[str, str] | None = None) -> list[str]:
    links = " ".join(f"[{f}](tables/{name}.{f})" for f in formats)
    lines = [f"{'#' * level} {title}", ""]
    if note:
        lines += [f"{note} Files: {links}", ""]
    else:
        lines += [f"Files: {links}", ""]
    lines += [markdown(frame, labels) if len(frame) else "*(no rows)*", ""]
    return lines


def _figure(fig: Figure) -> list[str]:
    if fig.skipped:
        return [f"### {fig.title}", "", f"*Not drawn: {fig.skipped}.*", ""]
    return [f"### {fig.title}", "", f"![{fig.title}](figures/{fig.name}.png)", "",
            f"{fig.caption} [SVG](figures/{fig.name}.svg)", ""]


def _join(values, numeric: bool = False) -> str:
    distinct = {str(v) for v in values if v is not None and v != ""}
    if not distinct:
        return "–"
    return ", ".join(sorted(distinct, key=(lambda s: (len(s), s)) if numeric else None))


def _value(v: object) -> str:
    if isinstance(v, list):
        return "[" + ",".join(f"{x:g}" for x in v) + "]"
    return "default" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


# ---- throughput --------------------------------------------------------------------------
def _bench_section(bench: Bench, figures: list[Figure], formats: tuple[str, ...]) -> list[str]:
    commit = bench.commit.get("id") or "?"
    dirty = " (uncommitted changes)" if bench.commit.get("dirty") else ""
    lines = ["## Throughput", "", f"From `{bench.source.name}` (pytest-benchmark, saved {bench.datetime or '?'}, "
             f"commit {commit[:12]}{dirty}).", ""]
    lines += [f"- {k}: {v}" for k, v in bench.machine.items()] + [""]
    by_name = {f.name: f for f in figures}
    for group, table in bench.groups.items():
        name = bench.file_name(group)
        lines += _table(group, name, shown(table), formats, _bench_sentence(table), level=3,
                        labels={"images_per_s": "images/s"})
        if name in by_name:
            lines += _figure(by_name[name])[2:]
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
