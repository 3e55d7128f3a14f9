"""Runs in MLflow and TensorBoard, and the store as Parquet: what goes in is read back with the trackers' own readers.

A tiny grid (the smoke grid's synthetic data, a few hundred images, 2 epochs, 2 runs) trains once in
worker processes, logging live to TensorBoard; its store is then exported every way and each copy is
compared with the store number by number. A single `ablations train` logs live to MLflow. Every command is a real subprocess, every store a real
file: an SQLite run store, an SQLite MLflow store, TensorBoard event files, Parquet files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")  # the extras: pip install -e ".[test]" installs them
pytest.importorskip("tensorboard")
pytest.importorskip("pyarrow")

from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from ablations.store.sqlite import STORE_NAME, Store  # noqa: E402
from ablations.tracking.mapping import EPOCH_METRICS, FINAL_METRICS, RUN_ID_TAG, params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Seconds on a CPU: 320 training images in batches of 32, 2 epochs, 2 cells of the smoke grid, seed 0.
TINY = ["--set", "epochs=2", "--set", "train_subset=320", "--set", "val_subset=64", "--set", "test_subset=64",
        "--only", "seed=0", "--only", "augment=none"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}


def python(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module", autouse=True)
def no_telemetry():
    """MLflow's clients in this process send no usage data either (the subprocesses get ENV)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> dict:
    """The tiny grid, trained by two worker processes that each log their runs to TensorBoard as they train."""
    folder = tmp_path_factory.mktemp("tracking")
    results, live = folder / "results", folder / "live"
    proc = python("-m", "ablations.run_grid", "--grid", "smoke", "--results", str(results), *TINY, "--no-report",
                  "--workers", "2", "--track", "tensorboard", "--track-uri", str(live))
    assert proc.returncode == 0, proc.stderr
    with Store.open_existing(results / STORE_NAME) as store:
        runs, epochs = store.runs(), store.epochs()
    assert [r["status"] for r in runs] == ["done", "done"]
    assert {e["epoch"] for e in epochs} == {1, 2}
    return {"folder": folder, "results": results, "live": live, "runs": runs, "epochs": epochs}


def export(grid: dict, *args: str) -> subprocess.CompletedProcess:
    """`ablations store export`, checking that the store is only read: same bytes after, nothing written beside it."""
    store = grid["results"] / STORE_NAME
    before = hashlib.sha256(store.read_bytes()).hexdigest(), sorted(os.listdir(grid["results"]))
    proc = python("-m", "ablations", "store", "export", "--results", str(grid["results"]), *args)
    assert (hashlib.sha256(store.read_bytes()).hexdigest(), sorted(os.listdir(grid["results"]))) == before
    return proc


def epochs_of(grid: dict, run_id: str) -> list[dict]:
    return [e for e in grid["epochs"] if e["run_id"] == run_id]


def per_epoch(grid: dict, run_id: str, name: str) -> dict[int, float]:
    """{epoch: value} of one metric in the store; an epoch without it (test_acc before the last) is left out."""
    return {e["epoch"]: e[name] for e in epochs_of(grid, run_id) if e[name] is not None}


def mlflow_runs(uri: str, experiment: str, view: int = ViewType.ACTIVE_ONLY) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} at {uri}"
    return client, client.search_runs([found.experiment_id], run_view_type=view)


def assert_mlflow_holds_the_store(grid: dict, uri: str) -> None:
    """One MLflow run per stored run, holding the same numbers: every epoch's metrics, the final metrics, the
    config as params, the tags."""
    client, logged = mlflow_runs(uri, "smoke")
    by_id = {r.data.tags[RUN_ID_TAG]: r for r in logged}
    assert sorted(by_id) == sorted(r["run_id"] for r in grid["runs"])
    for run in grid["runs"]:
        mlrun = by_id[run["run_id"]]
        assert mlrun.info.status == "FINISHED"
        for name in EPOCH_METRICS:
            history = {m.step: m.value for m in client.get_metric_history(mlrun.info.run_id, name)}
            assert history == per_epoch(grid, run["run_id"], name), name
        finals = {k: run[k] for k in FINAL_METRICS if run[k] is not None}
        assert {k: mlrun.data.metrics[k] for k in finals} == finals
        assert mlrun.data.params == params(run["config"])
        tags = mlrun.data.tags
        assert (tags["grid"], tags["cell"], tags["seed"], tags["status"]) == ("smoke", run["cell_id"], "0", "done")
        assert mlrun.info.run_name == f"augment=none weight_decay={run['config']['weight_decay']:g} seed=0"
        for key in ("git_commit", "torch", "device", "precision", "cpu_capability"):
            assert tags[key] == str(run["provenance"][key]), key


def test_export_to_mlflow_holds_the_stores_numbers_and_twice_adds_nothing(grid) -> None:
    uri = sqlite_uri(grid["folder"] / "export.db")
    first = export(grid, "--to", "mlflow", "--out", uri)
    assert first.returncode == 0, first.stderr
    assert "mlflow: 2 runs logged, 0 already there; experiment 'smoke'" in first.stdout
    assert_mlflow_holds_the_store(grid, uri)

    again = export(grid, "--to", "mlflow", "--out", uri)
    assert again.returncode == 0, again.stderr
    assert "mlflow: 0 runs logged, 2 already there" in again.stdout
    _, every = mlflow_runs(uri, "smoke", ViewType.ALL)  # deleted runs included: nothing was replaced either
    assert len(every) == 2


def test_an_export_replaces_an_earlier_attempt_of_a_run(grid, tmp_path) -> None:
    """A run trained again (a failed run retried) has a new finished_at in the store: the export logs the new
    attempt and deletes the old one, so each run is in the experiment once."""
    uri = sqlite_uri(tmp_path / "mlflow.db")
    assert export(grid, "--to", "mlflow", "--out", uri).returncode == 0
    retried = tmp_path / "retried"
    retried.mkdir()
    (retried / STORE_NAME).write_bytes((grid["results"] / STORE_NAME).read_bytes())
    with sqlite3.connect(retried / STORE_NAME) as db:  # the copy's runs as if trained again a second later
        db.execute("UPDATE runs SET finished_at = finished_at + 1")
    proc = python("-m", "ablations.store", "export", "--results", str(retried), "--to", "mlflow",
                  "--out", str(tmp_path / "mlflow.db"))  # a path ending in .db is an SQLite store
    assert proc.returncode == 0, proc.stderr
    assert "mlflow: 2 runs logged, 0 already there" in proc.stdout
    assert_mlflow_holds_the_store(grid, uri)
    _, deleted = mlflow_runs(uri, "smoke", ViewType.DELETED_ONLY)
    assert sorted(r.data.tags[RUN_ID_TAG] for r in deleted) == sorted(r["run_id"] for r in grid["runs"])


def tensorboard_runs(root: Path) -> dict[str, EventAccumulator]:
    """Each run folder's events, keyed by its path under root."""
    out = {}
    for events in sorted(root.rglob("events.out.tfevents.*")):
        folder = events.parent
        out[folder.relative_to(root).as_posix()] = accumulator = EventAccumulator(str(folder))
        accumulator.Reload()
    return out


def assert_tensorboard_holds_the_store(grid: dict, root: Path) -> None:
    """One event folder per stored run, `<cell>/seed=<seed>`, holding the same numbers (as float32): every epoch's
    scalars, the final metrics, the config as hparams, the tags as a text table."""
    logged = tensorboard_runs(root)
    # named by the cell on the grid's axes (--only picks runs; the axes stay the grid's)
    assert sorted(logged) == ["augment=none,weight_decay=0.001/seed=0", "augment=none,weight_decay=0/seed=0"]
    assert all(len(list((root / name).iterdir())) == 1 for name in logged)  # one event file per run
    for run in grid["runs"]:
        events = logged[f"augment=none,weight_decay={run['config']['weight_decay']:g}/seed=0"]
        for name in EPOCH_METRICS:
            scalars = {s.step: s.value for s in events.Scalars(name)}
            assert scalars == pytest.approx(per_epoch(grid, run["run_id"], name), rel=1e-6), name
        last = max(e["epoch"] for e in epochs_of(grid, run["run_id"]))
        for name in ("final_test_acc", "best_val_acc", "train_images_per_s"):
            assert [(s.step, s.value) for s in events.Scalars(name)] == [(last, pytest.approx(run[name], rel=1e-6))]
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["weight_decay"].number_value == run["config"]["weight_decay"]
        assert hparams["dataset"].string_value == "synthetic"
        text = events.Tensors("run/text_summary")[0].tensor_proto.string_val[0].decode()
        for tag, value in ((RUN_ID_TAG, run["run_id"]), ("status", "done"), ("cell", run["cell_id"]),
                           ("precision", run["provenance"]["precision"])):
            assert f"| {tag} | {value} |" in text


def test_a_grid_logs_each_run_live_from_its_worker_process(grid) -> None:
    assert_tensorboard_holds_the_store(grid, grid["live"])


def test_export_to_tensorboard_holds_the_stores_numbers_and_replaces_what_was_there(grid) -> None:
    root = grid["folder"] / "exported"
    for out in (root, root, grid["live"]):  # again, and into the folder the grid logged live: no scalar twice
        proc = export(grid, "--to", "tensorboard", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert f"tensorboard: 2 runs in {out}" in proc.stdout
        assert_tensorboard_holds_the_store(grid, out)


def test_parquet_round_trip_equals_the_store(grid) -> None:
    import pandas as pd

    out = grid["folder"] / "parquet"
    proc = export(grid, "--to", "parquet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out / "runs.parquet"), str(out / "epochs.parquet")]

    def plain(value):  # pandas reads a missing number as NaN
        return None if isinstance(value, float) and math.isnan(value) else value

    epochs = [{k: plain(v) for k, v in row.items()} for row in pd.read_parquet(out / "epochs.parquet").to_dict("records")]
    assert epochs == grid["epochs"]
    runs = pd.read_parquet(out / "runs.parquet").to_dict("records")
    assert len(runs) == len(grid["runs"])
    for read, stored in zip(runs, grid["runs"], strict=True):
        for key, value in stored.items():
            if key == "config":
                config = {k.removeprefix("config."): v for k, v in read.items() if k.startswith("config.")}
                assert config == {k: json.dumps(v) if isinstance(v, list) else v for k, v in value.items()}
            elif key == "provenance":
                assert json.loads(read["provenance"]) == value
            else:
                assert plain(read[key]) == value, key


def test_train_with_track_mlflow_logs_every_epoch_as_it_ends(tmp_path) -> None:
    uri = sqlite_uri(tmp_path / "train.db")
    proc = python("-m", "ablations.train", "--dataset", "synthetic", "--train-subset", "320", "--val-subset", "64",
                  "--test-subset", "64", "--batch-size", "32", "--epochs", "2", "--json",
                  "--track", "mlflow", "--track-uri", uri, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])  # the run's numbers as the trainer reports them
    client, (run,) = mlflow_runs(uri, "ablations-train")
    assert run.data.tags[RUN_ID_TAG] == summary["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["status"] == "done" and "grid" not in run.data.tags
    assert run.data.params == params(summary["config"])
    series = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)} for k in EPOCH_METRICS}
    assert all(sorted(series[k]) == [1, 2] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"))
    assert sorted(series["test_acc"]) == [2]  # the test set scores the final model only
    assert series["val_acc"][2] == summary["final_val_acc"]
    assert series["test_acc"][2] == summary["final_test_acc"]
    assert series["train_loss"][2] == summary["final_train_loss"]
    for key in ("final_test_acc", "best_val_acc", "best_val_epoch", "train_images_per_s", "wall_s"):
        assert run.data.metrics[key] == summary[key], key


BLOCKED = "import runpy, sys; sys.modules[sys.argv[1]] = None; sys.argv = sys.argv[2:]; runpy.run_module(sys.argv[0], run_name='__main__')"


@pytest.mark.parametrize(
    ("blocked", "command", "message"),
    [
        ("mlflow", ["ablations.store", "export", "--to", "mlflow"],
         'error: logging to MLflow needs MLflow, which is not installed here: pip install -e ".[mlflow]"'),
        ("tensorboard", ["ablations.store", "export", "--to", "tensorboard"],
         'error: logging to TensorBoard needs TensorBoard, which is not installed here: pip install -e ".[tensorboard]"'),
        ("pyarrow", ["ablations.store", "export", "--to", "parquet"],
         'error: parquet export needs pyarrow, which is not installed here: pip install -e ".[parquet]"'),
        ("tensorboard", ["ablations.train", "--dataset", "synthetic", "--epochs", "1", "--track", "tensorboard"],
         'error: logging to TensorBoard needs TensorBoard, which is not installed here: pip install -e ".[tensorboard]"'),
    ],
)
def test_a_missing_extra_is_one_line_with_its_pip_command(grid, tmp_path, blocked, command, message) -> None:
    """The package made unimportable in a real interpreter, as on a machine without the extra: exit 2 before any
    work, one line, nothing written."""
    if command[0] == "ablations.store":
        command = [*command, "--results", str(grid["results"]), "--out", str(tmp_path / "out")]
    else:
        command = [*command, "--track-uri", str(tmp_path / "out")]
    proc = python("-c", BLOCKED, blocked, *command)
    assert (proc.returncode, proc.stderr.strip()) == (2, message), proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "wandb"], "error: unknown export format 'wandb'; choose one of: csv, mlflow, parquet, tensorboard"),
        (["--to", "mlflow", "--out", "{tmp}/mlruns"],  # MLflow's folder store, which it has retired
         "error: cannot log to MLflow at {tmp}/mlruns: MlflowException: The filesystem tracking backend"),
        (["--to", "csv", "--experiment", "x"], "error: --experiment names an MLflow experiment; it does not apply"),
    ],
)
def test_bad_export_targets_are_one_line_errors(grid, tmp_path, args, message) -> None:
    proc = export(grid, *(a.format(tmp=tmp_path) for a in args))
    assert proc.returncode == 2 and proc.stderr.startswith(message.format(tmp=tmp_path)), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_track_uri_without_track_is_refused_before_training(tmp_path) -> None:
    proc = python("-m", "ablations.train", "--dataset", "synthetic", "--track-uri", str(tmp_path / "tb"))
    assert (proc.returncode, proc.stderr.strip()) == (
        2, "error: --track-uri and --track-experiment need --track mlflow or --track tensorboard")


def test_a_tracker_that_fails_warns_once_and_the_run_goes_on(tmp_path, capsys) -> None:
    """The run's TensorBoard folder cannot be made (a file stands where it goes): the run trains to the end and
    comes back done, with one warning that says how to log it later."""
    from ablations.config import TrainConfig
    from ablations.tracking.live import TrackSpec, tracked_run

    cfg = TrainConfig(dataset="synthetic", train_subset=320, val_subset=64, test_subset=64, batch_size=32, epochs=2,
                      device="cpu")
    (tmp_path / cfg.cell_id).write_text("in the way")
    result = tracked_run(cfg, TrackSpec("tensorboard", str(tmp_path), "unused"))
    assert result.status == "done" and len(result.epochs) == 2
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: stopped logging run {cfg.run_id} to tensorboard")
    assert warnings[0].endswith("`ablations store export --to tensorboard` logs it later")
