"""Runs in the trackers people use: MLflow and TensorBoard, live while a run trains or replayed from the store.

One mapping serves both ways. A run is named by its cell and seed; its config becomes params
(MLflow) or hparams (TensorBoard); each epoch becomes metrics at step = epoch under the store's own
column names (train_loss, train_acc, val_loss, val_acc, lr, lr_last, seconds, images_per_s, and
test_loss, test_acc on the last epoch); its end brings the final metrics (final_test_acc,
best_val_acc, wall_s, ...), the status and the provenance (git commit, torch, device, precision,
CPU capability) as tags. `ablations store export --to mlflow|tensorboard` replays every finished
run of a store through it (`export_runs`); `--track mlflow|tensorboard` on `ablations train` and
`ablations grid` calls it from the process that trains, as each epoch ends (`live_run`).

A run of the suite is one run in the tracker: its latest attempt, as in the store. Logging a run
again replaces what was logged of it before: in MLflow the runs tagged with its `ablations.run_id`
are deleted (MLflow keeps deleted runs until `mlflow gc`), in TensorBoard its folder's event
files. An export skips an MLflow run that already holds the store's attempt (its
`ablations.finished_at` tag matches), so exporting twice logs nothing the second time.

MLflow and TensorBoard are optional extras, imported only when asked for; their writers are in
`ablations.trackers`.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.config import FINAL_STATUSES, Status, TrainConfig, check_name
from ablations.errors import UserError
from ablations.grid import cell_label
from ablations.store import EPOCH_FIELDS, RESULT_FIELDS, Store

TRACKERS = ("mlflow", "tensorboard")
MISSING = {
    "mlflow": 'logging to MLflow needs MLflow, which is not installed here: pip install -e ".[mlflow]"',
    "tensorboard": 'logging to TensorBoard needs TensorBoard, which is not installed here: '
                   'pip install -e ".[tensorboard]"',
}
# Metric names are the store's column names: a number is called the same in the store, the CSV and the tracker.
EPOCH_METRICS = tuple(k for k in EPOCH_FIELDS if k != "epoch")
FINAL_METRICS = tuple(k for k in RESULT_FIELDS if k != "error")
PROVENANCE_TAGS = ("git_commit", "torch", "cuda", "device", "device_name", "precision", "cpu_capability", "host")
RUN_ID_TAG = "ablations.run_id"  # the suite's run id; MLflow's own run id is another
ATTEMPT_TAG = "ablations.finished_at"  # which attempt of the run an MLflow run holds (the store's finished_at)
MLFLOW_STATUS = {Status.DONE: "FINISHED", Status.DIVERGED: "FINISHED", Status.FAILED: "FAILED"}  # else KILLED
TAG_LIMIT = 5000  # characters MLflow keeps of a tag value; an error's text can be longer
METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy store
TENSORBOARD_DIR = "tensorboard"  # under the results folder, by default


# ---- the mapping: one run of the suite -> tracker calls ---------------------------------
@dataclass(frozen=True)
class RunInfo:
    """What names a run in a tracker: the same for a run training now and for one read back from the store."""

    run_id: str
    cell_id: str
    seed: int
    grid: str | None
    config: Mapping[str, Any]  # as the store keeps it: TrainConfig.to_dict()
    label: str  # the cell's coordinates on the grid's axes, or its id where there are none

    @classmethod
    def make(cls, config: Mapping[str, Any], run_id: str, cell_id: str, grid: str | None,
             axes: tuple[str, ...]) -> RunInfo:
        return cls(run_id, cell_id, config["seed"], grid, config, cell_label(config, axes) or cell_id)

    @property
    def name(self) -> str:  # the MLflow run name, e.g. 'augment=none weight_decay=0.001 seed=1'
        return f"{self.label} seed={self.seed}"

    @property
    def folder(self) -> str:  # the TensorBoard run folder, e.g. 'augment=none,weight_decay=0.001/seed=1'
        return f"{self.label.replace(' ', ',').replace('/', '_').replace(os.sep, '_')}/seed={self.seed}"


def params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config as MLflow params (text): a list such as milestones as JSON, as in the CSV export."""
    return {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in config.items()}


def hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as TensorBoard hparams: numbers, flags and names as they are, anything else as its param text."""
    text = params(config)
    return {k: v if isinstance(v, (bool, int, float, str)) else text[k] for k, v in config.items()}


def metrics(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    """The finite numbers of `row` among `names`. The store keeps a non-finite value (a diverged loss) as NULL,
    so a live run leaves it out too, and both ways log the same numbers."""
    out = {}
    for name in names:
        value = row.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out


def start_tags(info: RunInfo) -> dict[str, str]:
    return _tag_text({RUN_ID_TAG: info.run_id, "grid": info.grid, "cell": info.cell_id, "seed": info.seed,
                      "status": Status.RUNNING})


def end_tags(result: Mapping[str, Any], provenance: Mapping[str, Any]) -> dict[str, str]:
    """Status, error and provenance; the store's finished_at where the result comes from the store."""
    tags = {"status": result.get("status"), "error": result.get("error"), ATTEMPT_TAG: result.get("finished_at")}
    tags.update({k: provenance.get(k) for k in PROVENANCE_TAGS})
    return _tag_text(tags)


def _tag_text(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v)[:TAG_LIMIT] for k, v in tags.items() if v is not None}


def millis(seconds: float | None) -> int:
    return int(1000 * (time.time() if seconds is None else seconds))


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's first sentence on one line (MLflow's messages run to a paragraph with links)."""
    text = " ".join(str(err).split())
    end = text.find(". ")
    text = text[: end + 1] if end > 0 else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- opening a tracker (the writers are in ablations.trackers) ------------------------------
def require(kind: str) -> None:
    """Import a tracker's package, or stop with the one line that says how to install it."""
    check_name("tracker", kind, TRACKERS)
    try:
        if kind == "mlflow":
            import mlflow  # noqa: F401
        else:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        raise UserError(MISSING[kind]) from None


def mlflow_uri(given: str | None) -> str:
    """The tracking URI: `given`, else $MLFLOW_TRACKING_URI, else MLflow's default; a path ending in .db is an
    SQLite file. A relative SQLite path is made absolute here: a worker process or a Ray task runs elsewhere."""
    require("mlflow")
    import mlflow

    uri = given or mlflow.get_tracking_uri()
    if "://" not in uri and uri.endswith(".db"):
        uri = f"sqlite:///{Path(uri).resolve()}"
    elif uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    scheme = uri.split(":", 1)[0].split("+")[0]
    if scheme in DATABASE_SCHEMES:
        try:
            import alembic  # noqa: F401
            import sqlalchemy  # noqa: F401
        except ImportError:
            raise UserError(f"an {scheme} tracking URI needs SQLAlchemy and Alembic (MLflow's database store), "
                            f'not installed here: pip install -e ".[mlflow]"') from None
    return uri


@functools.lru_cache(maxsize=4)
def open_target(kind: str, where: str, experiment: str):  # -> trackers.MlflowTarget | trackers.TensorBoardTarget
    """The tracker at `where` (an MLflow tracking URI or a TensorBoard folder), opened once per process."""
    require(kind)
    from ablations.trackers import MlflowTarget, TensorBoardTarget

    return MlflowTarget(where, experiment) if kind == "mlflow" else TensorBoardTarget(where)


# ---- export: the store replayed ----------------------------------------------------------
def export_runs(store: Store, to: str, out: str | None, experiment: str | None = None) -> list[str]:
    """Replay every finished run (done, diverged or failed) of `store` into MLflow or TensorBoard; the lines to print.
    Queued and running runs are left out: they have no result yet."""
    require(to)
    grid = store.grid() or {}
    axes = tuple(grid.get("axes") or ())
    name = experiment or grid.get("name") or "ablations"
    where = mlflow_uri(out) if to == "mlflow" else str(Path(out or store.path.parent / TENSORBOARD_DIR).resolve())
    target = open_target(to, where, name)
    _, runs, epochs = store.snapshot()
    by_run: dict[str, list[dict]] = defaultdict(list)
    for row in epochs:
        by_run[row["run_id"]].append(row)
    finished = [run for run in runs if run["status"] in FINAL_STATUSES]
    kept = 0
    for run in finished:
        if target.holds(run["run_id"], run["finished_at"]):
            kept += 1
            continue
        info = RunInfo.make(run["config"], run["run_id"], run["cell_id"], run["grid"], axes)
        try:
            log = target.open(info, run["started_at"], live=False)
            for row in by_run[run["run_id"]]:
                log.epoch(row, at=run["finished_at"])
            log.end(run, run["provenance"] or {}, at=run["finished_at"])
        except Exception as err:  # a server gone, a full disk: what is logged stays, the rest can be exported again
            raise UserError(f"{to} export stopped at run {run['run_id']} ({kept} runs kept, others logged before it): "
                            f"{type(err).__name__}: {one_line(err)}; run the export again to finish it") from None
    if to == "mlflow":
        lines = [f"mlflow: {len(finished) - kept} runs logged, {kept} already there; experiment {name!r} at {where}"]
    else:
        lines = [f"tensorboard: {len(finished)} runs in {where} (view them: tensorboard --logdir {where})"]
    if len(runs) > len(finished):
        lines.append(f"{len(runs) - len(finished)} runs not finished (queued or running) were left out")
    return lines


# ---- live: the process that trains logs each epoch -----------------------------------------
@dataclass(frozen=True)
class TrackSpec:
    """Where runs log as they train: small and picklable, so the process that trains (this one, a worker
    process or a Ray task) opens its own tracker from it."""

    kind: str
    where: str  # an MLflow tracking URI, or an absolute TensorBoard folder
    experiment: str  # MLflow's experiment
    grid: str | None = None
    axes: tuple[str, ...] = ()


def add_track_arguments(parser: argparse.ArgumentParser, *, tensorboard_dir: str, experiment: str) -> None:
    """--track, --track-uri and --track-experiment, the same for `ablations train` and `ablations grid`."""
    group = parser.add_argument_group("tracking (optional extras: mlflow, tensorboard)")
    group.add_argument("--track", default=None, choices=TRACKERS, type=_tracker,
                       help="also log every epoch, as it ends, to MLflow or TensorBoard")
    group.add_argument("--track-uri", default=None, metavar="URI|DIR",
                       help="mlflow: tracking URI such as sqlite:///mlflow.db or http://HOST:5000 "
                            f"[$MLFLOW_TRACKING_URI, else MLflow's default]; tensorboard: log folder [{tensorboard_dir}]")
    group.add_argument("--track-experiment", default=None, metavar="NAME",
                       help=f"mlflow: the experiment [{experiment}]")


def _tracker(value: str) -> str:
    check_name("tracker", value, TRACKERS)
    return value


def spec_from_args(args: argparse.Namespace, *, tensorboard_dir: Path, experiment: str, grid: str | None = None,
                   axes: tuple[str, ...] = ()) -> TrackSpec | None:
    """The tracking spec of a command line, None without --track. The tracker is opened here once, before
    anything trains or is stored: a missing extra or an unusable URI or folder stops the command at once, and
    MLflow's experiment exists before worker processes that start together would race to create it."""
    if args.track is None:
        if args.track_uri or args.track_experiment:
            raise UserError("--track-uri and --track-experiment need --track mlflow or --track tensorboard")
        return None
    require(args.track)
    where = mlflow_uri(args.track_uri) if args.track == "mlflow" else str(Path(args.track_uri or tensorboard_dir).resolve())
    spec = TrackSpec(args.track, where, args.track_experiment or experiment, grid, tuple(axes))
    open_target(spec.kind, spec.where, spec.experiment)
    return spec


class LiveRun:
    """The tracker of one run training in this process; every call is a no-op without a spec.

    A tracker that fails (a server gone, a full disk) never stops the run: its first failure is one
    warning on stderr, and the run goes on without it. The store keeps the run all the same, and
    `ablations store export --to mlflow|tensorboard` logs it later."""

    def __init__(self, spec: TrackSpec | None, cfg: TrainConfig) -> None:
        self.spec, self.run_id, self.log = spec, cfg.run_id, None
        if spec is not None:
            info = RunInfo.make(cfg.to_dict(), cfg.run_id, cfg.cell_id, spec.grid, spec.axes)
            self.log = self._call(lambda: open_target(spec.kind, spec.where, spec.experiment).open(info))

    def epoch(self, row: Mapping[str, Any]) -> None:
        if self.log is not None:
            self._call(self.log.epoch, row)

    def end(self, result: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        log, self.log = self.log, None  # once: a second end (the context's, after an error) does nothing
        if log is not None:
            self._call(log.end, result, provenance)

    def _call(self, call: Callable, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as err:
            self.log = None
            print(f"warning: stopped logging run {self.run_id} to {self.spec.kind} ({type(err).__name__}: "
                  f"{one_line(err)}); the run goes on and the store keeps it: `ablations store export --to "
                  f"{self.spec.kind}` logs it later", file=sys.stderr, flush=True)
            return None


@contextmanager
def live_run(spec: TrackSpec | None, cfg: TrainConfig) -> Iterator[LiveRun]:
    """A LiveRun that is ended even when training raises: failed on an error; killed (MLflow's word) on Ctrl-C,
    where the store hands the run back to the queue."""
    run = LiveRun(spec, cfg)
    try:
        yield run
    except BaseException as err:
        status = Status.FAILED if isinstance(err, Exception) else Status.QUEUED
        run.end({"status": status, "error": f"{type(err).__name__}: {err}"}, {})
        raise
