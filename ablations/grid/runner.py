"""A grid's runs into its store, resumably: plan, check, queue, train.

    plan = plan_grid(load_grid("quick"), results=None)     # the runs, and where they are stored
    execution = Execution()
    workers = check(plan, execution)
    plan, pack = packing(plan, execution, workers=workers)   # --pack and --fit-seconds, decided
    outcome = run_planned(plan, execution, workers=workers, pack=pack)

Every check that can fail runs before the store is written (bad input changes nothing: no store,
no folder, no queued row); then the runs not finished before are queued, and an executor trains
them, each stored as it ends. Run it again and it skips every finished run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.config import FINISHED, Status, TrainConfig, cell_label
from ablations.errors import UserError
from ablations.grid.driver import execute
from ablations.grid.executors import check_backend, make_executor, preflight, prepare_ray, resolve_workers
from ablations.grid.packs import decide, make_packs, parse_pack
from ablations.grid.ray_cluster import check_reachable, disconnect, require_ray, resolve_address
from ablations.grid.spec import Grid, only
from ablations.store.sqlite import Store, store_path

# Commands write here unless told otherwise (git-ignored): a published study under results/
# changes only when a user points --results at it.
DEFAULT_RESULTS = Path("runs")


@dataclass(frozen=True)
class Execution:
    """Where and how a grid's runs train."""

    workers: int | str = "auto"  # runs at once: processes here, or Ray tasks; auto: one per core on CPU
    backend: str = "local"  # local or ray
    address: str | None = None  # Ray: host:port, ray://host:port, auto or local [$RAY_ADDRESS, else private]
    cpus_per_run: float = 1.0  # Ray: CPUs reserved per run
    gpus_per_run: float | None = None  # Ray: GPUs per run [0.25 on a cluster with GPUs, else 0]
    # Runs that differ only in seed, augmentation, weight decay and schedule trained as one model, up to this
    # many (1: unpacked); auto: the count a short, cached probe of the device finds fastest per image.
    pack: int | str = 1
    fit_seconds: float | None = None  # run only the complete seeds a probe predicts to finish in this budget


@dataclass(frozen=True)
class Plan:
    """What a grid command will do: the grid, its runs, and where they are stored."""

    grid: Grid
    configs: list[TrainConfig]
    results: Path

    @property
    def store_path(self) -> Path:
        return store_path(self.results)

    def status(self) -> dict[str, str]:
        """Status per run id; empty where no store exists yet (reading creates nothing)."""
        if not self.store_path.exists():
            return {}
        with Store.open_existing(self.store_path) as store:
            return store.status_of([c.run_id for c in self.configs])


@dataclass(frozen=True)
class Outcome:
    """What one call trained: counts by status (done, diverged, failed, claimed elsewhere), the runs
    finished before it, and its wall time."""

    counts: dict[str, int]
    skipped: int
    seconds: float


def plan_grid(grid: Grid, *, results: str | os.PathLike | None = None, only_runs: Mapping[str, Any] | None = None) -> Plan:
    """The grid's runs (those matching `only_runs`) and the results folder (default runs/<grid>)."""
    configs = only(grid.configs(), only_runs or {})
    if not configs:
        if only_runs:
            wanted = " ".join(f"{k}={v}" for k, v in only_runs.items())
            raise UserError(f"no run of grid {grid.name!r} matches --only {wanted}")
        raise UserError(f"grid {grid.name!r} has no runs")
    return Plan(grid, configs, Path(results) if results else DEFAULT_RESULTS / grid.name)


def check(p: Plan, execution: Execution) -> int:
    """Every check that can fail before the store is written; returns the worker count."""
    check_backend(execution.backend)
    if execution.backend == "local" and execution.address:
        raise UserError(f"--address {execution.address} is for the ray backend; add --backend ray, or drop --address")
    if execution.backend == "ray":  # the address first: a malformed or dead one is wrong with or without Ray here
        check_reachable(resolve_address(execution.address))
        require_ray(resolve_address(execution.address))
    workers = resolve_workers(str(execution.workers), execution.backend, p.configs)
    parse_pack(execution.pack)
    if execution.fit_seconds is not None and not execution.fit_seconds > 0:
        raise UserError(f"--fit-seconds must be above 0, got {execution.fit_seconds:g}")
    check_results_folder(p.results)
    if p.store_path.exists():
        with Store.open_existing(p.store_path) as store:  # opening checks that every page of it reads back
            store.check_grid(p.grid.spec())
    if execution.backend == "local":
        preflight(p.configs)
    else:  # last: it starts Ray, or waits seconds for a cluster that does not answer
        prepare_ray(address=execution.address, cpus_per_run=execution.cpus_per_run,
                    gpus_per_run=execution.gpus_per_run, device=p.configs[0].device)
    return workers


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


@contextmanager
def ray_disconnected_on_error() -> Iterator[None]:
    """check() connects to Ray; the executor disconnects when the runs end. Anything that fails in
    between (a tracker, the store, Ctrl-C) must not leave a Ray instance behind in the caller's process."""
    try:
        yield
    except BaseException:
        disconnect()
        raise


def packing(p: Plan, execution: Execution, *, workers: int, started: float | None = None) -> tuple[Plan, int]:
    """Runs per pack (`execution.pack`, measured for auto) and, with `fit_seconds` counted from `started`
    (time.monotonic() when the call began; default now), the plan cut to the complete seeds predicted to
    finish in time. After `check`, before the store is written, so it queues only what will run; prints
    what it decided, a line each."""
    decided = decide(execution.pack, p.configs, p.grid.seeds, workers=workers, fit_seconds=execution.fit_seconds,
                     started=started)
    for line in decided.lines:
        print(line, flush=True)
    if decided.seeds is not None:
        p = Plan(p.grid.with_seeds(list(decided.seeds)), [c for c in p.configs if c.seed in decided.seeds], p.results)
    return p, decided.size


def run_planned(p: Plan, execution: Execution, *, workers: int, track=None, pack: int = 1) -> Outcome:
    """Queue the plan's runs and train those not finished before (after `check`, which gave `workers`),
    `pack` at most to a pack (`packing` decides it). Ctrl-C or SIGTERM stops cleanly: the finished runs
    are stored, the rest handed back, and KeyboardInterrupt is raised after one line that says how to resume."""
    store, pending, skipped = enqueue(p)
    with store:
        try:
            counts = _train(p, execution, store, pending, skipped, workers, track, pack)
        finally:
            store.make_publishable()
    return Outcome(dict(counts[0]), skipped, counts[1])


def enqueue(p: Plan) -> tuple[Store, list[TrainConfig], int]:
    """Record the grid and queue its runs; returns the open store, the runs to train, the skipped count."""
    store = Store(p.store_path)
    try:
        store.enqueue(p.configs, grid=p.grid.name, grid_spec=p.grid.spec())
        status = store.status_of([c.run_id for c in p.configs])
    except BaseException:
        store.close()
        raise
    pending = [c for c in p.configs if status.get(c.run_id) not in FINISHED]
    return store, pending, len(p.configs) - len(pending)


def _train(p: Plan, execution: Execution, store: Store, pending: list[TrainConfig], skipped: int, workers: int,
           track, pack: int) -> tuple[Counter, float]:
    from tqdm import tqdm  # only where runs train

    progress = EpochProgress({c.run_id: c.epochs for c in pending})
    executor = make_executor(
        execution.backend, workers=workers, address=execution.address, cpus_per_run=execution.cpus_per_run,
        gpus_per_run=execution.gpus_per_run, device=next(iter({c.device for c in pending}), "auto"),
        on_progress=progress.epoch_ended,
    )
    packs = make_packs(pending, pack)
    packed = f" in {len(packs)} pack(s) of up to {pack}" if pack > 1 else ""
    print(f"grid {p.grid.name}: {len(p.configs)} runs, {skipped} finished before, {len(pending)} to run{packed} "
          f"on {execution.backend} with {executor.workers} worker(s); store {store.path}", flush=True)
    start = time.perf_counter()
    with tqdm(total=len(pending), unit="run", dynamic_ncols=True, file=sys.stderr, disable=not pending) as bar:
        progress.bar = bar

        def on_finish(cfg: TrainConfig, result: dict) -> None:
            progress.run_ended(cfg.run_id)
            bar.write(finish_line(p.grid, cfg, result))
            bar.update(1)

        try:
            with sigterm_as_interrupt():
                counts = execute(store, packs, executor, on_finish=on_finish, track=track,
                                 warn=lambda line: bar.write(line, file=sys.stderr))
        except KeyboardInterrupt:
            bar.close()
            status = store.status_of([c.run_id for c in p.configs])
            finished = sum(s in FINISHED for s in status.values())
            print(f"\ninterrupted: {finished} of {len(p.configs)} runs finished and stored; "
                  f"run the same command again to resume", flush=True)
            raise
    seconds = time.perf_counter() - start
    print(summary_line(counts, skipped, seconds), flush=True)
    return counts, seconds


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


# A run's line shows the grid's endpoint: a pilot that declares a validation endpoint never shows test
# accuracy while it is read (its budget is chosen on validation alone).
ENDPOINT_LABELS = {"final_test_acc": "test acc", "final_val_acc": "val acc", "best_val_acc": "best val acc"}


class EpochProgress:
    """The progress bar's note on the runs in flight: "epoch 37/120, 36/120", in the order they started, so a
    run of hours shows it moves. Epochs are heard of from a worker-progress thread, runs end on the driver's."""

    def __init__(self, total_epochs: dict[str, int]) -> None:
        self.total_epochs = total_epochs
        self.bar = None  # the tqdm bar, once it exists
        self._done: dict[str, int] = {}  # runs in flight: the last epoch each finished
        self._ended: set[str] = set()  # a run's last epoch may be heard of after its result arrived
        self._lock = threading.Lock()

    def epoch_ended(self, run_id: str, epoch: int) -> None:
        with self._lock:
            if run_id in self._ended or run_id not in self.total_epochs:
                return
            self._done[run_id] = epoch
            self._show()

    def run_ended(self, run_id: str) -> None:
        with self._lock:
            self._ended.add(run_id)
            self._done.pop(run_id, None)
            self._show(refresh=False)  # the run's own line and the bar's update follow

    def note(self) -> str:
        if not self._done:
            return ""
        return "epoch " + ", ".join(f"{epoch}/{self.total_epochs[run_id]}" for run_id, epoch in self._done.items())

    def _show(self, refresh: bool = True) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.note(), refresh=refresh)


def finish_line(grid: Grid, cfg: TrainConfig, result: dict) -> str:
    if result["status"] == Status.DONE:
        endpoint = grid.analysis.endpoint
        outcome = f"{ENDPOINT_LABELS[endpoint]} {100 * result[endpoint]:6.2f}%"
    elif result["status"] == Status.DIVERGED:
        outcome = f"diverged at epoch {result.get('diverged_epoch')}"
    else:
        outcome = f"FAILED: {result.get('error')}"
    label = cell_label(cfg.to_dict(), grid.axes) or "(single cell)"
    return f"{result['status']:8} {label} seed={cfg.seed}  {outcome}  {result.get('wall_s', 0.0):.1f} s"


def summary_line(counts: Counter, skipped: int, seconds: float) -> str:
    parts = [f"{counts.get(k, 0)} {k}" for k in (Status.DONE, Status.DIVERGED, Status.FAILED)]
    parts.append(f"{skipped} skipped (finished before)")
    if counts.get("claimed elsewhere"):
        parts.append(f"{counts['claimed elsewhere']} left to another runner")
    if counts.get("handed back"):
        parts.append(f"{counts['handed back']} handed back (claim lost)")
    return f"grid finished in {seconds:.0f} s: " + ", ".join(parts)
