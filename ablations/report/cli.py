"""ablations report: a grid's store (and benchmark JSON) -> tables, figures, REPORT.md and REPORT.html.

    ablations report                                            # runs/quick/runs.sqlite -> runs/quick/
    ablations report --results results/notebook_cpu --baseline augment=none,schedule=step
    ablations report --bench results/bench/intel-xeon-amx-bf16.json --out results/bench/intel-xeon-amx-bf16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ablations.errors import UserError, run_cli
from ablations.report.format import FORMATS
from ablations.report.publish import DEFAULT_TARGET, write_report
from ablations.report.runs import parse_baseline

DEFAULT_RESULTS = "runs/quick"  # where `ablations grid` writes by default


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablations report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=None, metavar="DIR",
                   help=f"folder holding runs.sqlite [{DEFAULT_RESULTS}; none with only --bench]")
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
    results = Path(args.results) if args.results else None if args.bench else Path(DEFAULT_RESULTS)
    if results is None and not args.out:
        raise UserError("--bench alone needs --out DIR: where its tables and REPORT.md go")
    paths = write_report(
        results, Path(args.out or results), baseline=parse_baseline(args.baseline) or None,
        formats=args.format, bench=Path(args.bench) if args.bench else None, target=args.target,
    )
    for path in paths:
        print(path)
    return 0


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))
