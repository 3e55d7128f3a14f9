"""python -m ablations.report (or `ablations-report`): the store (and a benchmark JSON) -> tables, figures, REPORT.md.

    python -m ablations.report                                  # results/runs.sqlite -> results/
    python -m ablations.report --baseline augment=none,schedule=step --format md,csv
    python -m ablations.report --bench .benchmarks/Linux-CPython-3.11-64bit/0001_x.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ablations.errors import run_cli
from ablations.report.format import FORMATS
from ablations.report.publish import DEFAULT_TARGET, write_report
from ablations.report.runs import parse_baseline


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ablations.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results", metavar="DIR", help="folder holding runs.sqlite [results]")
    p.add_argument("--out", default=None, metavar="DIR", help="where the report goes [the results folder]")
    p.add_argument("--baseline", default=None, metavar="KEY=VALUE,...",
                   help="the reference cell [augment=none,weight_decay=0,schedule=constant where they vary]")
    p.add_argument("--format", default=",".join(FORMATS), metavar="LIST",
                   help=f"table formats, comma-separated [{','.join(FORMATS)}]")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help=f"validation accuracy (fraction) for 'epochs to target' [{DEFAULT_TARGET}]")
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
