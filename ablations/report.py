"""python -m ablations.report: the store (and a benchmark JSON) -> tables, figures, REPORT.md.

    python -m ablations.report                                  # results/runs.sqlite -> results/
    python -m ablations.report --baseline augment=none,schedule=step --format md,csv
    python -m ablations.report --bench .benchmarks/Linux-CPython-3.11-64bit/0001_x.json

Reads only the store and the JSON: no torch, no stdout of a training run. The same inputs
give the same files, so a published report can be diffed against a regenerated one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ablations.errors import UserError, run_cli
from ablations.report_bench import Bench, load_bench, shown
from ablations.report_format import FORMATS, check_formats, write_table
from ablations.report_page import GridPart, render
from ablations.report_tables import (
    Runs,
    baseline_cell,
    cell_table,
    difference_table,
    interaction_tables,
    leaderboard,
    load_runs,
    main_effects,
    parse_baseline,
    problem_runs,
    status_table,
)
from ablations.store import Store, store_path

DEFAULT_TARGET = 0.98  # test accuracy as a fraction, for "epochs to target"; --target changes it


def grid_tables(r: Runs, baseline: dict[str, Any] | None, target: float) -> tuple[dict, dict[str, str], bool]:
    """Every table of a grid, by file name, with the baseline cell they compare against."""
    base, found = baseline_cell(r, baseline)
    cells = cell_table(r, target)
    tables = {
        "status": status_table(r), "problem_runs": problem_runs(r), "cells": cells,
        "vs_baseline": difference_table(r, base), "main_effects": main_effects(r, base),
        **interaction_tables(r), "leaderboard": leaderboard(cells, r.keys),
    }
    return tables, base, found


def write_report(results: Path, out: Path, *, baseline: dict[str, Any] | None = None,
                 formats: Iterable[str] = FORMATS, bench: Path | None = None,
                 target: float = DEFAULT_TARGET) -> list[Path]:
    """Write everything; returns every path written, REPORT.md last."""
    formats = check_formats(formats)
    if not 0 < target <= 1:
        raise UserError(f"--target is a fraction of test accuracy in (0, 1], e.g. 0.98; got {target}")
    results, out = Path(results), Path(out)
    bench_data: Bench | None = load_bench(bench) if bench is not None else None
    runs = _read_store(results, required=bench_data is None)
    # Plotting libraries load only now: a bad flag or a missing store is reported without them.
    from ablations.report_figures import draw_bench_figures, draw_grid_figures

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    grid = None
    if runs is not None:
        tables, base, found = grid_tables(runs, baseline, target)
        labels = {"epochs_to_target": f"epochs to {target:.0%} test acc"}
        for name, frame in tables.items():
            written += write_table(frame, out / "tables", name, formats, labels)
        figures = draw_grid_figures(runs, tables["main_effects"], tables["cells"], out / "figures")
        written += [p for f in figures for p in f.paths]
        with Store.open_existing(store_path(results)) as store:
            written += store.export_csv(out / "export")
        grid = GridPart(runs, tables, base, found, target, figures)
    bench_figures = []
    if bench_data is not None:
        for group, table in bench_data.groups.items():
            written += write_table(table, out / "tables", bench_data.file_name(group), formats,
                                   {"images_per_s": "images/s"}, shown=shown(table))
        bench_figures = draw_bench_figures(bench_data, out / "figures")
        written += [p for f in bench_figures for p in f.paths]
    page = out / "REPORT.md"
    page.write_text(render(grid, bench_data, bench_figures, formats, out), encoding="utf-8")
    return [*written, page]


def publish(results: Path, out: Path, *, baseline: dict[str, Any] | None = None,
            formats: Iterable[str] = FORMATS, bench: Path | None = None, target: float = DEFAULT_TARGET) -> Path:
    """Tables, figures and REPORT.md for a results folder; returns the page's path."""
    return write_report(results, out, baseline=baseline, formats=formats, bench=bench, target=target)[-1]


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ablations.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results", metavar="DIR", help="folder holding runs.sqlite [results]")
    p.add_argument("--out", default=None, metavar="DIR", help="where the report goes [the results folder]")
    p.add_argument("--baseline", default=None, metavar="KEY=VALUE,...",
                   help="the reference cell [augment=none,weight_decay=0,schedule=constant where they vary]")
    p.add_argument("--format", default=",".join(FORMATS), metavar="LIST",
                   help=f"table formats, comma-separated [{','.join(FORMATS)}]")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help=f"test accuracy (fraction) for 'epochs to target' [{DEFAULT_TARGET}]")
    p.add_argument("--bench", default=None, metavar="FILE.json", help="a pytest-benchmark JSON to add as Throughput")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = write_report(
        Path(args.results), Path(args.out or args.results), baseline=parse_baseline(args.baseline) or None,
        formats=args.format, bench=Path(args.bench) if args.bench else None, target=args.target,
    )
    for path in paths:
        print(path)
    return 0


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
