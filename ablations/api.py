"""The suite as typed functions: train one run, run a grid, read its runs, write its report.

    from ablations.api import TrainConfig, train, run_grid, load_runs, report

    result = train(TrainConfig(dataset="synthetic", epochs=2), on_epoch=print)   # -> RunResult
    grid = run_grid("smoke", results="runs/smoke")     # -> GridResult; run it again and it resumes
    runs = grid.runs()                                 # one row per run (a DataFrame)
    report("runs/smoke")                               # REPORT.md and REPORT.html beside the store

Every command of the command line is one of these functions behind its flags (ablations.cli).
Bad input raises `UserError` (the commands print it as one line and exit 2), and the caller's
process is left as it was found: its signal handlers, torch's thread count, torch's global random
state and cuDNN's benchmark flag are restored when a call returns or raises. Importing this module
loads neither torch nor pandas.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablations.config import TrainConfig, check_name, normalize_key
from ablations.errors import UserError
from ablations.grid.runner import (
    DEFAULT_RESULTS,
    Execution,
    Plan,
    check,
    packing,
    plan_grid,
    ray_disconnected_on_error,
    run_planned,
)
from ablations.grid.spec import Grid, load_grid
from ablations.report.options import DEFAULT_TARGET, FORMATS
from ablations.store.export import FILE_FORMATS, export_files
from ablations.store.sqlite import Store, store_path
from ablations.tracking.mapping import TENSORBOARD_DIR, TRACKERS

if TYPE_CHECKING:
    import pandas as pd

    from ablations.run.result import RunResult

__all__ = ["DEFAULT_RESULTS", "EXPORT_FORMATS", "GridResult", "Plan", "TrainConfig", "UserError", "export_store",
           "load_epochs", "load_runs", "model_names", "plan", "report", "run_grid", "store_summary", "train"]

# Columns of `load_runs` besides the grid's axes, in order; accuracies are fractions, as in the store.
RUN_COLUMNS = ("run_id", "grid", "cell_id", "status", "seed")
RESULT_COLUMNS = ("final_test_acc", "final_val_acc", "best_val_acc", "best_val_epoch", "final_train_acc",
                  "train_images_per_s", "wall_s", "peak_memory_bytes", "diverged_epoch", "error")
EXPORT_FORMATS = (*FILE_FORMATS, *TRACKERS)
# `train(track=...)`: where a single run logs by default (a grid logs under its results folder)
TRAIN_TENSORBOARD_DIR = Path("runs/train/tensorboard")
TRAIN_EXPERIMENT = "ablations-train"


def train(cfg: TrainConfig | None = None, /, *, on_epoch: Callable[[dict], None] | None = None,
          on_start: Callable[[TrainConfig], None] | None = None, track: str | None = None,
          track_uri: str | None = None, track_experiment: str | None = None, **settings: Any) -> RunResult:
    """Train one run; `settings` (flag names with underscores) override `cfg` or the defaults.
    `on_start` gets the config once every check has passed, `on_epoch` each epoch's metrics dict as it
    ends; `track` ("mlflow" or "tensorboard") also logs them there. The result carries its provenance; a crash is a result with status "failed", and bad input
    (a missing dataset, an input size the model cannot take) raises UserError. The run is not stored."""
    cfg = TrainConfig.from_mapping(settings, base=cfg) if settings else (cfg or TrainConfig())
    from ablations.tracking.live import track_spec, tracked_run  # torch loads only once the config is valid

    spec = track_spec(track, track_uri, track_experiment, tensorboard_dir=TRAIN_TENSORBOARD_DIR,
                      default_experiment=TRAIN_EXPERIMENT)
    if on_start is not None:
        on_start(cfg)
    with caller_state_kept():
        result = tracked_run(cfg, spec, on_epoch=on_epoch)
    if result.bad_input:
        raise UserError(result.error)
    return result


def model_names(pattern: str = "*", *, on_missing: Callable[[str], None] | None = None) -> list[str]:
    """The names `model` takes (built-in, torchvision:NAME, timm:NAME) matching a glob such as 'resnet*' or
    'timm:*'; `on_missing` hears of a source that is not installed here (timm is an extra)."""
    from ablations.models.zoo import model_names as names  # imports torchvision, and timm where installed

    return names(pattern, on_missing=on_missing)


def plan(grid: str | Grid = "quick", *, results: str | Path | None = None, set: Mapping[str, Any] | None = None,
         axes: Mapping[str, Sequence[Any]] | None = None, seeds: int | Sequence[int] | None = None,
         only: Mapping[str, Any] | None = None, device: str | None = None) -> Plan:
    """A grid (a name, a TOML path or a Grid) with its edits, its runs and its results folder, run or not:
    `set` fixes settings, `axes` adds or replaces axes ({"weight_decay": [0, 1e-3]}), `seeds` is a count or a
    list, `only` keeps the matching runs. `.status()` says which are finished; nothing is written."""
    edited = grid if isinstance(grid, Grid) else load_grid(grid)
    edited = edited.with_fixed_values({**(set or {}), **({"device": device} if device else {})})
    edited = edited.with_axis_values(axes or {})
    if seeds is not None:
        edited = edited.with_seeds(seeds if isinstance(seeds, int) else list(seeds))
    return plan_grid(edited, results=results, only_runs=only)


@dataclass(frozen=True)
class GridResult:
    """A grid's run: `counts` of this call (done, diverged, failed), `skipped` (finished before), the store,
    and `runs()` for its runs as `load_runs` gives them."""

    grid: str
    store: Path
    run_ids: tuple[str, ...]
    skipped: int
    counts: dict[str, int]
    seconds: float
    report: Path | None = None

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    def runs(self) -> pd.DataFrame:
        frame = load_runs(self.store.parent)
        return frame[frame["run_id"].isin(set(self.run_ids))].reset_index(drop=True)


def run_grid(grid: str | Grid = "quick", *, results: str | Path | None = None,
             set: Mapping[str, Any] | None = None, axes: Mapping[str, Sequence[Any]] | None = None,
             seeds: int | Sequence[int] | None = None, only: Mapping[str, Any] | None = None,
             workers: int | str = "auto", backend: str = "local", address: str | None = None,
             cpus_per_run: float = 1.0, gpus_per_run: float | None = None, device: str | None = None,
             track: str | None = None, track_uri: str | None = None, track_experiment: str | None = None,
             report: bool = False, pack: int | str = 1, fit_seconds: float | None = None) -> GridResult:
    """Run a grid into `results` (default runs/<grid>): finished runs are skipped, so calling it again
    resumes (the arguments are `plan`'s, then where runs train: `workers`, `backend` ("local" or "ray"),
    `address`, `cpus_per_run`, `gpus_per_run`). `track` ("mlflow" or "tensorboard", at `track_uri`) logs
    every epoch as it happens; `report=True` also writes the report. `pack` trains up to that many runs that
    differ only in seed, augmentation, weight decay and schedule as one model, each stored as its own run
    ("auto": the count a short, cached probe of the device finds fastest per image); `fit_seconds` runs only
    the complete seeds a probe predicts to finish within that many seconds of the call. Ctrl-C raises
    KeyboardInterrupt after the finished runs are stored."""
    from ablations.tracking.live import track_spec  # loads torch: after the arguments are checked

    started = time.monotonic()  # --fit-seconds counts the checks and the probe
    p = plan(grid, results=results, set=set, axes=axes, seeds=seeds, only=only, device=device)
    execution = Execution(workers, backend, address, cpus_per_run, gpus_per_run, pack, fit_seconds)
    with caller_state_kept(), ray_disconnected_on_error():
        workers_ = check(p, execution)
        p, pack_size = packing(p, execution, workers=workers_, started=started)  # before the store: queue what runs
        spec = track_spec(track, track_uri, track_experiment, tensorboard_dir=p.results / TENSORBOARD_DIR,
                          default_experiment=p.grid.name, grid=p.grid.name, axes=tuple(p.grid.axes))  # before the store
        outcome = run_planned(p, execution, workers=workers_, track=spec, pack=pack_size)
    written = _grid_report(p) if report else None
    return GridResult(p.grid.name, p.store_path, tuple(c.run_id for c in p.configs), outcome.skipped,
                      outcome.counts, outcome.seconds, written)


def _grid_report(p: Plan) -> Path:
    from ablations.report.publish import publish  # pandas and matplotlib: only once a report is asked for
    from ablations.run.samples import write_augment_samples  # torch

    write_augment_samples(p.configs, p.results)
    return publish(results=p.results, out=p.results)


def load_runs(results: str | Path) -> pd.DataFrame:
    """One row per run of the store in `results`: run_id, grid, cell_id, status, seed, the grid's
    axes as typed columns (floats stay floats), the final metrics (accuracies as fractions), the
    full config (a dict) and the provenance."""
    import pandas as pd

    from ablations.report.runs import load_runs as load_report_runs  # pandas

    with _open(results) as store:
        rows = store.runs()
        meta = store.grid()
        found = load_report_runs(store) if rows else None
    declared = meta.get("axes") if isinstance(meta, dict) else None
    # The grid's declared axes, even where a filtered run leaves one level; older stores: what varies
    axes = _in_axis_order(normalize_key(a) for a in declared) if isinstance(declared, dict) and declared else (
        found.axes if found is not None else ())
    records = [
        {**{c: row.get(c) for c in RUN_COLUMNS},
         **{axis: _typed(row["config"].get(axis)) for axis in axes},
         **{c: row.get(c) for c in RESULT_COLUMNS},
         "config": row["config"], "provenance": row.get("provenance") or {}}
        for row in rows
    ]
    columns = [*RUN_COLUMNS, *axes, *RESULT_COLUMNS, "config", "provenance"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    # SQLite hands back None for a missing number; as floats they read as NaN, as pandas users expect
    return frame.astype({c: float for c in RESULT_COLUMNS if c != "error"})


def load_epochs(results: str | Path) -> pd.DataFrame:
    """One row per epoch of every run in `results` (run_id, epoch, lr, losses, accuracies, seconds)."""
    import pandas as pd

    with _open(results) as store:
        return pd.DataFrame(store.epochs())


def store_summary(results: str | Path = DEFAULT_RESULTS / "quick") -> dict[str, int]:
    """Runs per status in the store in `results` (every status listed, 0 if none). The store is only read."""
    with _open(results) as store:
        return store.counts()


def export_store(results: str | Path = DEFAULT_RESULTS / "quick", to: str = "csv", out: str | Path | None = None,
                 experiment: str | None = None) -> list[str]:
    """Export the store in `results` as CSV or Parquet files (into `out`, default beside it), or replay its
    finished runs into MLflow (`out` a tracking URI, `experiment` default the grid's name) or TensorBoard
    (`out` a folder). Returns what was written, a line each. The store is only read."""
    check_name("export format", to, EXPORT_FORMATS)
    if experiment is not None and to != "mlflow":
        raise UserError(f"--experiment names an MLflow experiment; it does not apply to --to {to}")
    with _open(results) as store:
        if to in FILE_FORMATS:
            return [str(path) for path in export_files(store, to, out)]
        from ablations.tracking.export import export_runs  # the trackers load only when asked for

        return export_runs(store, to, None if out is None else str(out), experiment)


def report(results: str | Path | None = DEFAULT_RESULTS / "quick", out: str | Path | None = None, *,
           baseline: Mapping[str, Any] | str | None = None, bench: str | Path | None = None,
           formats: Iterable[str] | str | None = None, target: float | None = None) -> Path:
    """Write the report of the store in `results` into `out` (default: `results`); returns REPORT.md's path.
    `baseline` is the reference cell ({"augment": "none"} or "augment=none,..."), `bench` a pytest-benchmark
    JSON to add as throughput (alone when `results` is None), `formats` the table formats (md, tex, html,
    csv), `target` the validation accuracy (fraction) that "epochs to target" counts to."""
    from ablations.report.publish import write_report  # pandas and matplotlib: after the arguments are checked
    from ablations.report.runs import parse_baseline

    if results is None and out is None:
        raise UserError("--bench alone needs --out DIR: where its tables and REPORT.md go")
    if isinstance(baseline, str):
        baseline = parse_baseline(baseline)
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    written = write_report(None if results is None else Path(results), Path(out if out is not None else results),
                           baseline=dict(baseline) if baseline else None, formats=formats or FORMATS,
                           bench=None if bench is None else Path(bench),
                           target=DEFAULT_TARGET if target is None else target)
    return written[-1]


@contextmanager
def caller_state_kept() -> Iterator[None]:
    """Give back what training changes process-wide: SIGINT and SIGTERM handlers (the grid installs
    its own), torch's thread count, its global random state (model init seeds it) and cuDNN's
    benchmark flag."""
    import torch

    handlers = ({sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    threads, rng, benchmark = torch.get_num_threads(), torch.get_rng_state(), torch.backends.cudnn.benchmark
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.backends.cudnn.benchmark = benchmark


def _in_axis_order(axes: Iterable[str]) -> tuple[str, ...]:
    from ablations.report.runs import AXIS_ORDER  # pandas

    return tuple(sorted(axes, key=lambda a: (AXIS_ORDER.index(a) if a in AXIS_ORDER else len(AXIS_ORDER), a)))


def _open(results: str | Path) -> Store:
    return Store.open_existing(store_path(results))  # no store there: its one-line error


def _typed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # JSON lists are TrainConfig tuples

