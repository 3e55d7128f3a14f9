"""Live tracking: the process that trains a run logs each epoch to MLflow or TensorBoard as it ends.

`--track mlflow|tensorboard` on `ablations train` and `ablations grid` (and `track=` in the API)
make a `TrackSpec`; each process that trains (this one, a worker process or a Ray task) opens its
own tracker from it, and `tracked_run` trains a run through it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.config import Status, TrainConfig
from ablations.errors import UserError
from ablations.run.execute import run_pack
from ablations.run.result import RunResult
from ablations.tracking.mapping import RunInfo, mlflow_uri, one_line, require
from ablations.tracking.trackers import open_target


@dataclass(frozen=True)
class TrackSpec:
    """Where runs log as they train: small and picklable, so the process that trains (this one, a worker
    process or a Ray task) opens its own tracker from it."""

    kind: str
    where: str  # an MLflow tracking URI, or an absolute TensorBoard folder
    experiment: str  # MLflow's experiment
    grid: str | None = None
    axes: tuple[str, ...] = ()


def track_spec(track: str | None, uri: str | None = None, experiment: str | None = None, *,
               tensorboard_dir: str | Path, default_experiment: str, grid: str | None = None,
               axes: tuple[str, ...] = ()) -> TrackSpec | None:
    """Where runs log (None without `track`). The tracker is opened here once, before anything trains or is
    stored: a missing extra or an unusable URI or folder stops the command at once, and MLflow's experiment
    exists before worker processes that start together would race to create it."""
    if track is None:
        if uri or experiment:
            raise UserError("--track-uri and --track-experiment need --track mlflow or --track tensorboard")
        return None
    require(track)
    where = mlflow_uri(uri) if track == "mlflow" else str(Path(uri or tensorboard_dir).resolve())
    spec = TrackSpec(track, where, experiment or default_experiment, grid, tuple(axes))
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


def tracked_run(cfg: TrainConfig, track: TrackSpec | None = None, *,
                on_epoch: Callable[[dict], None] | None = None) -> RunResult:
    """`run_one`, with each epoch also logged to the tracker of `track` (a no-op without one)."""
    return tracked_pack([cfg], track, on_epoch=None if on_epoch is None else lambda k, metrics: on_epoch(metrics))[0]


def tracked_pack(cfgs: list[TrainConfig], track: TrackSpec | None = None, *,
                 on_epoch: Callable[[int, dict], None] | None = None,
                 checkpoint: str | None = None) -> list[RunResult]:
    """`run_pack`: one run, or several trained as one model, each logged to its own tracker run as an
    unpacked run is; `on_epoch(k, metrics)` gets run k's epochs after its tracker has them (a run resumed
    from its `checkpoint` logs the epochs it trains after resuming)."""
    with ExitStack() as stack:
        trackers = [stack.enter_context(live_run(track, cfg)) for cfg in cfgs]

        def epoch(k: int, metrics: dict) -> None:
            trackers[k].epoch(metrics)
            if on_epoch is not None:
                on_epoch(k, metrics)

        results = run_pack(cfgs, on_epoch=epoch, checkpoint=checkpoint)
        for tracker, result in zip(trackers, results, strict=True):
            tracker.end(result.to_dict(), result.provenance or {})
    return results
