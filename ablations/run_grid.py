"""python -m ablations.run_grid: expand a grid, skip finished runs, run the rest, report.

    python -m ablations.run_grid                       # the quick grid into runs/quick/
    python -m ablations.run_grid --grid notebook --workers 4
    python -m ablations.run_grid --axis weight-decay=0,5e-4 --seeds 3 --dry-run
    RAY_ADDRESS=HEAD_IP:6379 python -m ablations.run_grid --backend ray
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from ablations.backends import BACKENDS, check_backend
from ablations.config import FINISHED, Status, TrainConfig
from ablations.errors import UserError, run_cli
from ablations.grid import Grid, available_grids, load_grid, only
from ablations.store import Store, store_path
from ablations.tracking import TENSORBOARD_DIR, add_track_arguments, spec_from_args

# Commands write here unless told otherwise (git-ignored): a published study under results/
# changes only when a user points --results at it.
DEFAULT_RESULTS = Path("runs")


def _backend(value: str) -> str:
    """argparse type: a bad name is the suite's one-line error, not argparse's usage dump."""
    check_backend(value)
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablations grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", default="quick", help=f"a named grid ({', '.join(available_grids())}) or a TOML path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a setting for every run")
    p.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2", help="add or replace an axis")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="replicates per cell (seeds 0..N-1)")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE", help="run only matching runs")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their count; run nothing")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="folder for the store and report [runs/GRID]; publish with results/GRID")
    p.add_argument("--workers", default="auto", metavar="N",
                   help="runs at once: processes here, or Ray tasks [auto: one per core on CPU, 1 on a GPU]")
    p.add_argument("--backend", default="local", choices=BACKENDS, type=_backend,
                   help="where runs train: local (this machine) or ray [local]")
    p.add_argument("--address", default=None,
                   help="Ray cluster: host:port, ray://host:port, auto or local [$RAY_ADDRESS, else a private local instance]")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs reserved per run [1]")
    p.add_argument("--gpus-per-run", type=float, default=None,
                   help="Ray: GPUs per run, fractions share one [0.25 on a cluster with GPUs, else 0]")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (same as --set device=...)")
    p.add_argument("--no-report", action="store_true", help="skip the tables and figures at the end")
    add_track_arguments(p, tensorboard_dir=f"RESULTS/{TENSORBOARD_DIR}", experiment="the grid's name")
    return p


@dataclass(frozen=True)
class Plan:
    """What a grid command will do: the grid, its runs, and where they are stored."""

    grid: Grid
    configs: list[TrainConfig]
    results: Path


def plan(args: argparse.Namespace) -> Plan:
    """The grid with the command line's edits applied, its runs, and the results folder."""
    grid = load_grid(args.grid)
    fixed = args.set + ([f"device={args.device}"] if args.device else [])
    grid = grid.with_fixed(fixed).with_axes(args.axis).with_seeds(args.seeds)
    configs = only(grid.configs(), args.only)
    if not configs:
        if args.only:
            raise UserError(f"no run of grid {grid.name!r} matches --only {' '.join(args.only)}")
        raise UserError(f"grid {grid.name!r} has no runs")
    results = Path(args.results) if args.results else DEFAULT_RESULTS / grid.name
    return Plan(grid, configs, results)


def validate(args: argparse.Namespace, p: Plan) -> int:
    """Every check that can fail before the store is written; returns the worker count.

    Bad input must change nothing: no store, no folder, no queued row."""
    from ablations.backends import preflight, prepare_ray, resolve_workers  # torch loads only for real work
    from ablations.ray_cluster import check_reachable, require_ray, resolve_address

    check_backend(args.backend)  # the API sets it without argparse's check
    if args.backend == "local" and args.address:
        raise UserError(f"--address {args.address} is for the ray backend; add --backend ray, or drop --address")
    if args.backend == "ray":  # the address first: a malformed or dead one is wrong with or without Ray here
        check_reachable(resolve_address(args.address))
        require_ray(resolve_address(args.address))
    workers = resolve_workers(args.workers, args.backend, p.configs)
    check_results_folder(p.results)
    path = store_path(p.results)
    if path.exists():
        with Store.open_existing(path) as store:  # opening checks that every page of it reads back
            store.check_grid(p.grid.spec())
    if args.backend == "local":
        preflight(p.configs)
    elif args.backend == "ray":  # last: it starts Ray, or waits seconds for a cluster that does not answer
        prepare_ray(address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                    device=p.configs[0].device)
    return workers


@contextmanager
def ray_disconnected_on_error() -> Iterator[None]:
    """validate() connects to Ray; the executor disconnects when the runs end. Anything that fails in
    between (a tracker, the store, Ctrl-C) must not leave a Ray instance behind in the caller's process."""
    try:
        yield
    except BaseException:
        from ablations.ray_cluster import disconnect

        disconnect()
        raise


def tracking(args: argparse.Namespace, p: Plan):
    """The --track spec of this grid (None without --track); opens the tracker once to check it."""
    return spec_from_args(args, tensorboard_dir=p.results / TENSORBOARD_DIR, experiment=p.grid.name,
                          grid=p.grid.name, axes=tuple(p.grid.axes))


def check_results_folder(results: Path) -> None:
    """A results folder must be a folder we can write, or not exist yet under one we can."""
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results} is a file; give a folder (it will hold runs.sqlite and the report)")
    existing = next((p for p in (results, *results.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        raise UserError(f"{existing} is read-only; give --results a folder you can write")
    path = store_path(results)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{path} is read-only; copy it somewhere writable and point --results there")


def enqueue(p: Plan) -> tuple[Store, list[TrainConfig], int]:
    """Record the grid and queue its runs; returns the open store, the runs to train, the skipped count."""
    store = Store(store_path(p.results))
    try:
        store.enqueue(p.configs, grid=p.grid.name, grid_spec=p.grid.spec())
        status = store.status_of([c.run_id for c in p.configs])
    except BaseException:
        store.close()
        raise
    pending = [c for c in p.configs if status.get(c.run_id) not in FINISHED]
    return store, pending, len(p.configs) - len(pending)


def run_pending(args: argparse.Namespace, p: Plan, store: Store, pending: list[TrainConfig], skipped: int,
                workers: int, track=None) -> Counter | None:
    """Train the pending runs with a progress bar; None if interrupted (Ctrl-C or SIGTERM)."""
    from tqdm import tqdm

    from ablations.backends import make_executor
    from ablations.execute import execute

    executor = make_executor(
        args.backend, workers=workers, address=args.address, cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run, device=next(iter({c.device for c in pending}), "auto"),
    )
    print(f"grid {p.grid.name}: {len(p.configs)} runs, {skipped} finished before, {len(pending)} to run "
          f"on {args.backend} with {executor.workers} worker(s); store {store.path}", flush=True)
    start = time.perf_counter()
    with tqdm(total=len(pending), unit="run", dynamic_ncols=True, file=sys.stderr, disable=not pending) as bar:
        def on_finish(cfg: TrainConfig, result: dict) -> None:
            bar.write(finish_line(p.grid, cfg, result))
            bar.update(1)

        try:
            with sigterm_as_interrupt():
                counts = execute(store, pending, executor, on_finish=on_finish, track=track,
                                 warn=lambda line: bar.write(line, file=sys.stderr))
        except KeyboardInterrupt:
            bar.close()
            status = store.status_of([c.run_id for c in p.configs])
            finished = sum(s in FINISHED for s in status.values())
            print(f"\ninterrupted: {finished} of {len(p.configs)} runs finished and stored; "
                  f"run the same command again to resume", flush=True)
            return None
    print(summary_line(counts, skipped, time.perf_counter() - start), flush=True)
    return counts


def publish_report(p: Plan) -> None:
    from ablations.report import publish
    from ablations.samples import write_augment_samples

    write_augment_samples(p.configs, p.results)
    print(f"report: {publish(results=p.results, out=p.results)}", flush=True)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop cleanly (KeyboardInterrupt), even where SIGINT was ignored when the
    process started (a command launched in the background inherits that); the caller's handlers
    are back afterwards."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_dry_run(grid: Grid, configs: list[TrainConfig], results: Path) -> None:
    status = read_status(store_path(results), configs)
    rows = [
        [i + 1, c.run_id, *(getattr(c, a) for a in grid.axes), c.seed, status.get(c.run_id, "new")]
        for i, c in enumerate(configs)
    ]
    print(tabulate(rows, headers=["#", "run id", *grid.axes, "seed", "status"], tablefmt="simple"))
    cells = len({c.cell_id for c in configs})
    done = sum(status.get(c.run_id) in FINISHED for c in configs)
    print(f"\n{len(configs)} runs ({cells} cells x {len(grid.seeds)} seeds); {done} finished, {len(configs) - done} to run")


def read_status(path: Path, configs: list[TrainConfig]) -> dict[str, str]:
    """Status per run id of a store that may not exist yet (a dry run creates nothing)."""
    if not path.exists():
        return {}
    with Store.open_existing(path) as store:
        return store.status_of([c.run_id for c in configs])


def finish_line(grid: Grid, cfg: TrainConfig, result: dict) -> str:
    if result["status"] == Status.DONE:
        outcome = f"test acc {100 * result['final_test_acc']:6.2f}%"
    elif result["status"] == Status.DIVERGED:
        outcome = f"diverged at epoch {result.get('diverged_epoch')}"
    else:
        outcome = f"FAILED: {result.get('error')}"
    return f"{result['status']:8} {grid.cell_label(cfg)} seed={cfg.seed}  {outcome}  {result.get('wall_s', 0.0):.1f} s"


def summary_line(counts: Counter, skipped: int, seconds: float) -> str:
    parts = [f"{counts.get(k, 0)} {k}" for k in (Status.DONE, Status.DIVERGED, Status.FAILED)]
    parts.append(f"{skipped} skipped (finished before)")
    if counts.get("claimed elsewhere"):
        parts.append(f"{counts['claimed elsewhere']} left to another runner")
    if counts.get("handed back"):
        parts.append(f"{counts['handed back']} handed back (claim lost)")
    return f"grid finished in {seconds:.0f} s: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    p = plan(args)
    if args.dry_run:
        print_dry_run(p.grid, p.configs, p.results)
        return 0
    with ray_disconnected_on_error():
        workers = validate(args, p)
        track = tracking(args, p)  # before the store is written
        store, pending, skipped = enqueue(p)
        with store:
            try:
                counts = run_pending(args, p, store, pending, skipped, workers, track)
            finally:
                store.make_publishable()
    if counts is None:
        return 130
    if not args.no_report:
        publish_report(p)
    return 1 if counts.get(Status.FAILED) else 0


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
