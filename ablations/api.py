"""The suite from Python: train one run, run a grid, read its runs, write its report.

    from ablations import TrainConfig, train, run_grid, load_runs, report

    result = train(TrainConfig(dataset="synthetic", epochs=2), on_epoch=print)
    df = run_grid("smoke", results="runs/smoke")      # one row per run; run it again and it resumes
    report("runs/smoke")                               # REPORT.md and REPORT.html beside the store

These are the command-line tools without their command lines: the same config checks, store,
resume and report. Bad input raises `UserError` (the CLIs print it as one line and exit 2), and the
caller's process is left as it was found: its signal handlers, torch's thread count, torch's global
random state and cuDNN's benchmark flag are restored when a call returns or raises.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablations.config import TrainConfig, normalize_key
from ablations.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from ablations.store import Store
    from ablations.trainer import RunResult

# Columns of `load_runs` besides the grid's axes, in order; accuracies are fractions, as in the store.
RUN_COLUMNS = ("run_id", "grid", "cell_id", "status", "seed")
RESULT_COLUMNS = ("final_test_acc", "final_val_acc", "best_val_acc", "best_val_epoch", "final_train_acc",
                  "train_images_per_s", "wall_s", "peak_memory_bytes", "diverged_epoch", "error")


def train(cfg: TrainConfig | None = None, /, *, on_epoch: Callable[[dict], None] | None = None,
          **settings: Any) -> RunResult:
    """Train one run; `settings` (flag names with underscores) override `cfg` or the defaults.
    `on_epoch` gets each epoch's metrics dict as it ends. The run is not stored: a grid stores."""
    cfg = TrainConfig.from_mapping(settings, base=cfg) if settings else (cfg or TrainConfig())
    with caller_state_kept():
        from ablations.trainer import train as train_run  # torch loads only once the config is valid

        return train_run(cfg, on_epoch=on_epoch)


def run_grid(grid: str = "quick", *, results: str | Path | None = None,
             set: Mapping[str, Any] | None = None, axes: Mapping[str, Sequence[Any]] | None = None,
             seeds: int | Sequence[int] | None = None, only: Mapping[str, Any] | None = None,
             workers: int | str = "auto", backend: str = "local", address: str | None = None,
             device: str | None = None, track: str | None = None, track_uri: str | None = None,
             report: bool = False) -> pd.DataFrame:
    """Run a grid (a name or a TOML path) into `results` (default runs/<grid>) and return its runs
    as `load_runs` does, restricted to this grid's runs. Finished runs are skipped, so calling it
    again resumes. `set` fixes settings, `axes` adds or replaces axes ({"weight_decay": [0, 1e-3]}),
    `only` keeps matching runs; `track` ("mlflow" or "tensorboard", at `track_uri`) logs every epoch
    as it happens; `report=True` also writes the report. Ctrl-C raises
    KeyboardInterrupt after the finished runs are stored."""
    import ablations.run_grid  # noqa: F401  the command's own steps: plan, validate, enqueue, run

    cli = sys.modules["ablations.run_grid"]

    args = cli.build_parser().parse_args([])
    args.grid, args.results, args.workers, args.backend = grid, results, str(workers), backend
    args.address, args.device, args.no_report = address, device, not report
    args.set, args.axis, args.only, args.seeds = [], [], [], None
    args.track, args.track_uri = track, track_uri
    with caller_state_kept(), cli.ray_disconnected_on_error():
        plan = cli.plan(args)
        edited = plan.grid.with_fixed_values(set or {}).with_axis_values(axes or {})
        if seeds is not None:
            edited = edited.with_seeds(seeds if isinstance(seeds, int) else list(seeds))
        configs = _only(edited.configs(), only or {})
        if not configs:
            raise UserError(f"no run of grid {edited.name!r} matches only={dict(only or {})}")
        plan = cli.Plan(edited, configs, plan.results)
        workers_ = cli.validate(args, plan)
        tracking = cli.tracking(args, plan)
        store, pending, skipped = cli.enqueue(plan)
        with store:
            try:
                counts = cli.run_pending(args, plan, store, pending, skipped, workers_, tracking)
            finally:
                store.make_publishable()
        if counts is None:
            raise KeyboardInterrupt
        if report:
            cli.publish_report(plan)
    frame = load_runs(plan.results)
    wanted = {c.run_id for c in configs}
    return frame[frame["run_id"].isin(wanted)].reset_index(drop=True)


def load_runs(results: str | Path) -> pd.DataFrame:
    """One row per run of the store in `results`: run_id, grid, cell_id, status, seed, the grid's
    axes as typed columns (floats stay floats), the final metrics (accuracies as fractions), the
    full config (a dict) and the provenance."""
    import pandas as pd

    from ablations.report.runs import load_runs as load_report_runs

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


def report(results: str | Path, out: str | Path | None = None, *, baseline: Mapping[str, Any] | None = None,
           bench: str | Path | None = None) -> Path:
    """Write the report of the store in `results` into `out` (default: `results`); returns REPORT.md's path."""
    from ablations.report import publish

    results = Path(results)
    return publish(results, Path(out) if out is not None else results, baseline=dict(baseline) if baseline else None,
                   bench=Path(bench) if bench is not None else None)


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
    from ablations.report.runs import AXIS_ORDER

    return tuple(sorted(axes, key=lambda a: (AXIS_ORDER.index(a) if a in AXIS_ORDER else len(AXIS_ORDER), a)))


def _open(results: str | Path) -> Store:
    # imported here, not with the package: `python -m ablations.store` must load it as __main__ first
    from ablations.store import Store, store_path

    return Store.open_existing(store_path(results))  # no store there: its one-line error


def _only(configs: list[TrainConfig], wanted: Mapping[str, Any]) -> list[TrainConfig]:
    from ablations.grid import only

    return only(configs, [f"{key}={_flag_value(value)}" for key, value in wanted.items()])


def _flag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _typed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # JSON lists are TrainConfig tuples

