"""ablations report (or python -m ablations.report): a grid's store (and benchmark JSON) -> tables,
figures, REPORT.md and REPORT.html.

    ablations report                                            # runs/quick/runs.sqlite -> runs/quick/
    ablations report --results results/notebook_cpu --baseline augment=none,schedule=step
    ablations report --bench results/bench/intel-xeon-amx-bf16.json --out results/bench/intel-xeon-amx-bf16
"""

from __future__ import annotations

import argparse
import sys

from ablations import api
from ablations.errors import run_cli
from ablations.report.options import DEFAULT_TARGET, FORMATS

DEFAULT_RESULTS = api.DEFAULT_RESULTS / "quick"  # where `ablations grid` writes by default


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablations report", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--results", default=None, metavar="DIR",
                   help=f"folder holding runs.sqlite [{DEFAULT_RESULTS}; none with only --bench]")
    p.add_argument("--out", default=None, metavar="DIR", help="where the report goes [the results folder]")
    p.add_argument("--baseline", default=None, metavar="KEY=VALUE,...",
                   help="the reference cell [augment=none,weight_decay=0,schedule=constant where they vary]")
    p.add_argument("--format", default=",".join(FORMATS), metavar="LIST",
                   help=f"table formats, comma-separated [{','.join(FORMATS)}]")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help=f"validation accuracy (fraction) for 'epochs to target' [{DEFAULT_TARGET}]")
    p.add_argument("--bench", default=None, metavar="FILE.json", help="a pytest-benchmark JSON to add as Throughput "
                                                                      "[none]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = args.results if args.results else None if args.bench else DEFAULT_RESULTS
    page = api.report(results, args.out, baseline=args.baseline, bench=args.bench, formats=args.format,
                      target=args.target)
    print(f"report: {page}")
    return 0


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))
