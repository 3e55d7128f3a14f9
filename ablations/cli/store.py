"""ablations store (or python -m ablations.store): read a grid's store: runs per status; export it.

    ablations store summary --results runs/quick
    ablations store export --results runs/quick --to parquet
    ablations store export --results runs/quick --to mlflow --out sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from ablations import api
from ablations.cli.types import checked
from ablations.config import check_name
from ablations.errors import run_cli

DEFAULT_RESULTS = api.DEFAULT_RESULTS / "quick"  # where `ablations grid` writes by default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablations store", description="Read the run store of a grid.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{summary,export}")
    summary = commands.add_parser("summary", help="print how many runs are in each status")
    export = commands.add_parser(
        "export", help="write the runs as CSV or Parquet files, or replay them into MLflow or TensorBoard",
        description="Write the runs and their epochs as files (csv, parquet), or replay every finished run into "
                    "an MLflow experiment or TensorBoard event folders. The store is only read.")
    for sub in (summary, export):
        sub.add_argument("--results", default=str(DEFAULT_RESULTS), metavar="DIR",
                         help=f"folder holding runs.sqlite [{DEFAULT_RESULTS}]")
    export.add_argument("--to", default="csv", choices=api.EXPORT_FORMATS,
                        type=checked(partial(check_name, "export format", choices=api.EXPORT_FORMATS)),
                        help="csv: runs.csv and epochs.csv; parquet: runs.parquet and epochs.parquet; mlflow: one "
                             "MLflow run per run; tensorboard: one event folder per run [csv]")
    export.add_argument("--out", metavar="DIR|URI",
                        help="csv, parquet: a folder [the results folder]; mlflow: a tracking URI such as "
                             "sqlite:///mlflow.db or http://HOST:5000 [$MLFLOW_TRACKING_URI, else MLflow's default]; "
                             "tensorboard: a folder [RESULTS/tensorboard]")
    export.add_argument("--experiment", metavar="NAME", help="mlflow: the experiment [the grid's name]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        for line in api.export_store(args.results, args.to, args.out, args.experiment):
            print(line)
        return 0
    counts = api.store_summary(args.results)
    for status, n in counts.items():
        print(f"{status:<9} {n}")
    print(f"{'total':<9} {sum(counts.values())}")
    return 0


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))
