"""A store replayed into MLflow or TensorBoard: `ablations store export --to mlflow|tensorboard`.

An export skips an MLflow run that already holds the store's attempt (its `ablations.finished_at`
tag matches), so exporting twice logs nothing the second time. The store is only read.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ablations.config import FINAL_STATUSES
from ablations.errors import UserError
from ablations.store.sqlite import Store
from ablations.tracking.mapping import TENSORBOARD_DIR, RunInfo, mlflow_uri, one_line, require
from ablations.tracking.trackers import open_target


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
