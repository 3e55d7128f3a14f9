"""The two trackers' writers: an MLflow experiment and a TensorBoard log folder, each with a run log per run.

What a run becomes (names, params, metrics, tags) is decided in `ablations.tracking.mapping`, once for
both; this file only speaks each tracker's API. Each is imported only when asked for (`open_target`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ablations.errors import UserError
from ablations.tracking.mapping import (
    ATTEMPT_TAG,
    EPOCH_METRICS,
    FINAL_METRICS,
    METRICS_PER_BATCH,
    MLFLOW_STATUS,
    RUN_ID_TAG,
    RunInfo,
    end_tags,
    hparams,
    metrics,
    millis,
    one_line,
    params,
    require,
    start_tags,
)


class MlflowTarget:
    """An MLflow experiment: one MLflow run per run of the suite, found again by its `ablations.run_id` tag."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        try:
            if uri.startswith("sqlite:///"):  # SQLite makes the file, not its folder
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                self.experiment_id = self.client.create_experiment(experiment)
            else:
                if found.lifecycle_stage == "deleted":  # a deleted experiment keeps its name: take it back
                    self.client.restore_experiment(found.experiment_id)
                self.experiment_id = found.experiment_id
        except Exception as err:  # whatever the store or server says, it means: not here
            raise UserError(f"cannot log to MLflow at {uri}: {type(err).__name__}: {one_line(err).rstrip('.')}; "
                            f"give a tracking URI such as sqlite:///mlflow.db or http://HOST:5000") from None

    def logged(self, run_id: str) -> list:
        """The MLflow runs (not deleted) that hold the suite's run `run_id`."""
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'")

    def holds(self, run_id: str, finished_at: float | None) -> bool:
        """True if the experiment holds exactly this attempt of the run, once: an export can skip it."""
        found = self.logged(run_id)
        return len(found) == 1 and found[0].data.tags.get(ATTEMPT_TAG) == str(finished_at)

    def open(self, info: RunInfo, started_at: float | None = None, *, live: bool = True) -> MlflowRunLog:
        from mlflow.entities import Param

        for earlier in self.logged(info.run_id):  # an earlier attempt, or an earlier export: replaced
            self.client.delete_run(earlier.info.run_id)
        run = self.client.create_run(self.experiment_id, start_time=millis(started_at), tags=start_tags(info),
                                     run_name=info.name)
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params(info.config).items()])
        return MlflowRunLog(self.client, run.info.run_id, live)


class MlflowRunLog:
    """One MLflow run being written. Live, each epoch is sent as it ends; replayed, all at once at the end."""

    def __init__(self, client, run_id: str, live: bool) -> None:
        self.client, self.run_id, self.live = client, run_id, live
        self.pending: list = []
        self.step = 0

    def epoch(self, row: Mapping[str, Any], at: float | None = None) -> None:
        from mlflow.entities import Metric

        self.step = row["epoch"]
        self.pending += [Metric(k, v, millis(at), self.step) for k, v in metrics(row, EPOCH_METRICS).items()]
        if self.live:
            self._flush()

    def end(self, result: Mapping[str, Any], provenance: Mapping[str, Any], at: float | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        # the final metrics sit at the last epoch's step, where a plot against steps ends
        self.pending += [Metric(k, v, millis(at), self.step) for k, v in metrics(result, FINAL_METRICS).items()]
        self._flush()
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in end_tags(result, provenance).items()])
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(result.get("status"), "KILLED"),
                                   end_time=millis(at))

    def _flush(self) -> None:
        for start in range(0, len(self.pending), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + METRICS_PER_BATCH])
        self.pending = []


class TensorBoardTarget:
    """A folder of TensorBoard runs: one event folder per run of the suite, `<cell>/seed=<seed>`."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot write TensorBoard logs under {root} ({err.strerror}); give another folder") from None
        if not os.access(self.root, os.W_OK):
            raise UserError(f"{root} is read-only; give TensorBoard logs another folder")

    def holds(self, run_id: str, finished_at: float | None) -> bool:
        return False  # event files carry no run id to compare: a run's folder is rewritten, never added to

    def open(self, info: RunInfo, started_at: float | None = None, *, live: bool = True) -> TensorBoardRunLog:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / info.folder
        for earlier in folder.glob("events.out.tfevents.*"):  # an earlier attempt, or an earlier export: replaced
            earlier.unlink()
        return TensorBoardRunLog(SummaryWriter(str(folder)), info, live)


class TensorBoardRunLog:
    """One TensorBoard run being written: scalars per epoch; at the end a text table of the tags, and the
    config as hparams with the final metrics (TensorBoard's HPARAMS tab)."""

    def __init__(self, writer, info: RunInfo, live: bool) -> None:
        self.writer, self.info, self.live = writer, info, live
        self.step = 0

    def epoch(self, row: Mapping[str, Any], at: float | None = None) -> None:
        self.step = row["epoch"]
        for k, v in metrics(row, EPOCH_METRICS).items():
            self.writer.add_scalar(k, v, self.step, walltime=at)
        if self.live:
            self.writer.flush()  # visible in TensorBoard now, not after its two-minute flush

    def end(self, result: Mapping[str, Any], provenance: Mapping[str, Any], at: float | None = None) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        tags = {**start_tags(self.info), **end_tags(result, provenance)}
        table = "| tag | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in tags.items())
        self.writer.add_text("run", table, self.step, walltime=at)
        final = metrics(result, FINAL_METRICS)
        # What SummaryWriter.add_hparams writes, but into this run's own event file, not a new sub-run.
        for summary in hparams_summary(hparams(self.info.config), final):
            self.writer.file_writer.add_summary(summary, self.step, at)
        for k, v in final.items():
            self.writer.add_scalar(k, v, self.step, walltime=at)
        self.writer.close()


@functools.lru_cache(maxsize=4)
def open_target(kind: str, where: str, experiment: str):  # -> trackers.MlflowTarget | trackers.TensorBoardTarget
    """The tracker at `where` (an MLflow tracking URI or a TensorBoard folder), opened once per process."""
    require(kind)
    return MlflowTarget(where, experiment) if kind == "mlflow" else TensorBoardTarget(where)
