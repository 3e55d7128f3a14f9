"""The store (and a benchmark JSON) -> tables, figures, REPORT.md and REPORT.html: what `ablations report` writes.

Reads only the store and the JSON: no torch, no stdout of a training run. The same inputs
give the same files, so a published report can be diffed against a regenerated one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ablations.errors import UserError
from ablations.report.bench import Bench, load_bench, shown
from ablations.report.blocks import to_markdown
from ablations.report.format import FORMATS, check_formats, write_table
from ablations.report.html import to_html
from ablations.report.options import DEFAULT_TARGET
from ablations.report.page import SAMPLES_FIGURE, sections, table_title
from ablations.report.runs import Runs, load_runs
from ablations.report.study import analyse
from ablations.staging import carry, placed, staged
from ablations.store.export import export_csv
from ablations.store.sqlite import Store, store_path


def write_report(results: Path | None, out: Path, *, baseline: dict[str, Any] | None = None,
                 formats: Iterable[str] = FORMATS, bench: Path | None = None,
                 target: float = DEFAULT_TARGET) -> list[Path]:
    """Write everything; returns every path written, REPORT.html then REPORT.md last.
    `results` None: a throughput report of `bench` alone."""
    formats = check_formats(formats)
    if not 0 < target <= 1:
        raise UserError(f"--target is a fraction of validation accuracy in (0, 1], e.g. 0.98; got {target}")
    out = Path(out)
    bench_data: Bench | None = load_bench(bench) if bench is not None else None
    runs = _read_store(Path(results), required=bench_data is None) if results is not None else None
    # Plotting libraries load only in _write: a bad flag or a missing store is reported without them.
    with staged(out) as stage:  # a failure leaves the previous report, never half of one
        carry(out, stage, SAMPLES_FIGURE)
        written = _write(stage, results, runs, bench_data, baseline, formats, target)
        return placed(stage, out, written)


def _write(out: Path, results: Path | None, runs: Runs | None, bench_data: Bench | None,
           baseline: dict[str, Any] | None, formats: tuple[str, ...], target: float) -> list[Path]:
    from ablations.report.figures import draw_bench_figures, draw_grid_figures  # matplotlib: a bad flag fails first

    written: list[Path] = []
    study, figures, bench_figures = None, [], []
    if runs is not None:
        study = analyse(runs, baseline, target)
        labels = {"epochs_to_target": f"epochs to {target:.0%} val acc"}
        for name, frame in study.tables.items():
            if len(frame.columns):  # a table this store cannot have (a pilot's budgets in a plain grid) is not written
                written += write_table(frame, out / "tables", name, formats, labels, caption=table_title(name))
        figures = draw_grid_figures(study, out / "figures")
        written += [p for f in figures for p in f.paths]
        written += _export(results, out / "export")
    if bench_data is not None:
        for group, table in bench_data.groups.items():
            name = bench_data.file_name(group)
            written += write_table(table, out / "tables", name, formats, {"images_per_s": "images/s"},
                                   shown=shown(table), caption=table_title(name))
        bench_figures = draw_bench_figures(bench_data, out / "figures")
        written += [p for f in bench_figures for p in f.paths]
    # One list of sections, two renderings: the Markdown and the HTML page cannot disagree.
    blocks = sections(study, figures, bench_data, bench_figures, formats, out)
    browser, page = out / "REPORT.html", out / "REPORT.md"
    browser.write_text(to_html(blocks, out), encoding="utf-8")
    page.write_text(to_markdown(blocks), encoding="utf-8")
    return [*written, browser, page]


def publish(results: Path, out: Path, *, baseline: dict[str, Any] | None = None,
            formats: Iterable[str] = FORMATS, bench: Path | None = None, target: float = DEFAULT_TARGET) -> Path:
    """Tables, figures, REPORT.md and REPORT.html for a results folder; returns REPORT.md's path."""
    return write_report(results, out, baseline=baseline, formats=formats, bench=bench, target=target)[-1]


def _export(results: Path, folder: Path) -> list[Path]:
    """The store as CSV beside the report (a store of an older schema exports its columns as they are)."""
    with Store.open_existing(store_path(results)) as store:
        return export_csv(store, folder)


def _read_store(results: Path, *, required: bool) -> Runs | None:
    path = store_path(results)
    if not path.is_file():
        if required:
            raise UserError(f"no run store at {path}; run `python -m ablations.run_grid` first, "
                            "or pass --results DIR (or --bench FILE.json for throughput only)")
        return None
    with Store.open_existing(path) as store:
        runs = load_runs(store)
    if runs is None and required:
        raise UserError(f"the run store {path} holds no runs; run `python -m ablations.run_grid` first")
    return runs
