"""ablations grid (or python -m ablations.run_grid): expand a grid, skip finished runs, run the rest, report.

    ablations grid                                     # the quick grid into runs/quick/
    ablations grid --grid notebook --workers 4
    ablations grid --axis weight-decay=0,5e-4 --seeds 3 --dry-run
    RAY_ADDRESS=HEAD_IP:6379 ablations grid --backend ray
    ablations grid --grid notebook --pack auto --fit-seconds 600
"""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from ablations import api
from ablations.cli.track_flags import add_track_arguments
from ablations.cli.types import checked
from ablations.config import FINISHED, Status
from ablations.errors import run_cli
from ablations.grid.executors import BACKENDS, check_backend
from ablations.grid.packs import parse_pack
from ablations.grid.spec import available_grids, parse_assignments, parse_axes
from ablations.tracking.mapping import TENSORBOARD_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablations grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", default="quick", help=f"a named grid ({', '.join(available_grids())}) or a TOML path "
                                                   "[quick]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a setting for every run (repeatable) [none]")
    p.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2", help="add or replace an axis (repeatable) [none]")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="replicates per cell (seeds 0..N-1) [the grid's seeds]")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE", help="run only matching runs (repeatable) [all]")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their count; run nothing")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder for the store and report [runs/GRID]; publish with results/GRID")
    p.add_argument("--workers", default="auto", metavar="N",
                   help="runs at once: processes here, or Ray tasks [auto: one per core on CPU, 1 on a GPU]")
    p.add_argument("--backend", default="local", choices=BACKENDS, type=checked(check_backend),
                   help="where runs train: local (this machine) or ray [local]")
    p.add_argument("--address", default=None,
                   help="Ray cluster: host:port, ray://host:port, auto or local [$RAY_ADDRESS, else a private local instance]")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs reserved per run [1]")
    p.add_argument("--gpus-per-run", type=float, default=None,
                   help="Ray: GPUs per run, fractions share one [0.25 on a cluster with GPUs, else 0]")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (same as --set device=...) [the grid's, else auto]")
    p.add_argument("--pack", default=1, type=parse_pack, metavar="K|auto",
                   help="train up to K runs that differ only in seed, augmentation, weight decay and schedule as one "
                        "model, each stored as its own run; auto: the K a short, cached probe of this device finds "
                        "fastest per image (1 on the CPUs measured so far) [1]")
    p.add_argument("--fit-seconds", type=float, default=None, metavar="S",
                   help="run only the complete seeds (seed-major) a probe predicts to finish within S seconds of the "
                        "command's start [all]")
    p.add_argument("--no-report", action="store_true", help="skip the tables and figures at the end")
    add_track_arguments(p, tensorboard_dir=f"RESULTS/{TENSORBOARD_DIR}", experiment="the grid's name")
    return p


def print_dry_run(p: api.Plan) -> None:
    status = p.status()
    axes = list(p.grid.axes)
    rows = [[i + 1, c.run_id, *(getattr(c, a) for a in axes), c.seed, status.get(c.run_id, "new")]
            for i, c in enumerate(p.configs)]
    print(tabulate(rows, headers=["#", "run id", *axes, "seed", "status"], tablefmt="simple"))
    cells = len({c.cell_id for c in p.configs})
    done = sum(status.get(c.run_id) in FINISHED for c in p.configs)
    print(f"\n{len(p.configs)} runs ({cells} cells x {len(p.grid.seeds)} seeds); {done} finished, "
          f"{len(p.configs) - done} to run")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    edits = {"set": parse_assignments(args.set, "--set"), "axes": parse_axes(args.axis), "seeds": args.seeds,
             "only": parse_assignments(args.only, "--only"), "device": args.device}
    if args.dry_run:
        print_dry_run(api.plan(args.grid, results=args.results, **edits))
        return 0
    try:
        result = api.run_grid(args.grid, results=args.results, **edits, workers=args.workers, backend=args.backend,
                              address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                              track=args.track, track_uri=args.track_uri, track_experiment=args.track_experiment,
                              report=not args.no_report, pack=args.pack, fit_seconds=args.fit_seconds)
    except KeyboardInterrupt:  # the runner said how many runs are stored and how to resume
        return 130
    if result.report is not None:
        print(f"report: {result.report}", flush=True)
    return 1 if result.counts.get(Status.FAILED) else 0


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))
