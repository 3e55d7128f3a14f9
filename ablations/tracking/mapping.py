"""One run of the suite as tracker calls, the same for a run training now and one replayed from the store.

A run is named by its cell and seed; its config becomes params (MLflow) or hparams (TensorBoard);
each epoch becomes metrics at step = epoch under the store's own column names (train_loss,
train_acc, val_loss, val_acc, lr, lr_last, seconds, images_per_s, and test_loss, test_acc on the
last epoch); its end brings the final metrics (final_test_acc, best_val_acc, wall_s, ...), the
status and the provenance (git commit, torch, device, precision, CPU capability) as tags.

A run of the suite is one run in the tracker: its latest attempt, as in the store. Logging a run
again replaces what was logged of it before: in MLflow the runs tagged with its `ablations.run_id`
are deleted (MLflow keeps deleted runs until `mlflow gc`), in TensorBoard its folder's event
files. MLflow and TensorBoard are optional extras, imported only when asked for.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.config import Status, cell_label, check_name
from ablations.errors import UserError
from ablations.store.sqlite import EPOCH_FIELDS, RESULT_FIELDS

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


# ---- opening a tracker (the writers are in ablations.tracking.trackers) ------------------------------
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
