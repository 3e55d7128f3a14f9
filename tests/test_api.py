"""The Python API (ablations.api): train / run_grid / load_runs / report, called as a user's script would."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pandas as pd
import pytest
import torch

from ablations.api import TrainConfig, UserError, load_epochs, load_runs, report, run_grid, train
from ablations.store.sqlite import Store, store_path

# The smoke grid is 2 augment x 2 weight decays x 2 seeds; the tests train its no-augmentation half
NO_AUGMENT = {"augment": "none"}
SMOKE_RUNS = 4


def test_train_calls_back_each_epoch_and_learns():
    seen = []
    result = train(TrainConfig(dataset="synthetic", epochs=2, batch_size=32, test_subset=256), on_epoch=seen.append)
    assert [m["epoch"] for m in seen] == [1, 2]
    assert result.status == "done" and result.final_test_acc > 0.5  # chance is 0.1


def test_train_settings_override_the_config_and_bad_ones_raise():
    with pytest.raises(UserError, match="unknown schedule 'sometimes'"):
        train(TrainConfig(dataset="synthetic"), schedule="sometimes")
    with pytest.raises(UserError, match="epochs must be above 0"):
        train(dataset="synthetic", epochs=0)


def test_run_grid_returns_one_typed_row_per_run_and_resumes(tmp_path, capsys):
    result = run_grid("smoke", results=tmp_path, only=NO_AUGMENT, workers=1)
    assert (result.grid, result.store, result.skipped, result.counts) == ("smoke", store_path(tmp_path), 0,
                                                                          {"done": SMOKE_RUNS})
    first = result.runs()
    assert len(first) == SMOKE_RUNS and set(first["status"]) == {"done"}
    assert first["weight_decay"].dtype == float and sorted(first["weight_decay"].unique()) == [0.0, 1e-3]
    assert set(first["augment"]) == {"none"} and sorted(first["seed"]) == [0, 0, 1, 1]
    assert (first["final_test_acc"] > 0.1).all()
    # each run stores the sizes of its splits (1,024 synthetic images less a tenth for validation)
    assert first.loc[0, "provenance"]["split_sizes"] == {"train": 922, "val": 102, "test": 256}
    finished = _finished_at(tmp_path)

    capsys.readouterr()
    again = run_grid("smoke", results=tmp_path, only=NO_AUGMENT, workers=1)
    assert f"{SMOKE_RUNS} finished before, 0 to run" in capsys.readouterr().out
    assert (again.skipped, again.counts) == (SMOKE_RUNS, {})
    second = again.runs()
    assert _finished_at(tmp_path) == finished  # nothing trained twice
    pd.testing.assert_frame_equal(first.drop(columns=["config", "provenance"]),
                                  second.drop(columns=["config", "provenance"]))
    assert len(load_epochs(tmp_path)) == SMOKE_RUNS  # one epoch each


def test_run_grid_edits_axes_with_typed_values_and_filters(tmp_path):
    frame = run_grid("smoke", results=tmp_path, axes={"weight_decay": [0.0, 5e-4]}, set={"augment": "none"},
                     seeds=[3], only={"weight_decay": 5e-4}, workers=1).runs()
    assert frame[["weight_decay", "seed"]].values.tolist() == [[5e-4, 3]]
    assert "augment" not in frame.columns  # fixed, no longer an axis
    assert frame.loc[0, "config"]["augment"] == "none"


def test_run_grid_leaves_the_caller_as_it_found_it(tmp_path):
    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGINT, handler)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(1234)
    expected_draw = torch.rand(3)
    torch.manual_seed(1234)
    try:
        run_grid("smoke", results=tmp_path, only={"augment": "none", "weight_decay": 0, "seed": 0}, workers=1)
        assert signal.getsignal(signal.SIGINT) is handler
        assert torch.get_num_threads() == 1
        assert torch.equal(torch.rand(3), expected_draw)  # the run's seeding did not leak
    finally:
        signal.signal(signal.SIGINT, previous)
        torch.set_num_threads(threads)


def test_bad_input_raises_user_error_and_writes_nothing(tmp_path):
    with pytest.raises(UserError, match="unknown grid"):
        run_grid("no_such_grid", results=tmp_path / "a")
    with pytest.raises(UserError, match="weight-decay"):
        run_grid("smoke", results=tmp_path / "b", axes={"weight_decay": ["lots"]})
    with pytest.raises(UserError, match="list of levels"):
        run_grid("smoke", results=tmp_path / "c", axes={"weight_decay": 1e-3})
    with pytest.raises(UserError, match="no run of grid 'smoke' matches"):
        run_grid("smoke", results=tmp_path / "d", only={"seed": 7})
    with pytest.raises(UserError, match="no run store at"):
        load_runs(tmp_path / "e")
    assert not any(tmp_path.iterdir())


def test_report_writes_the_page_from_the_store(tmp_path):
    run_grid("smoke", results=tmp_path, only={**NO_AUGMENT, "seed": 0}, workers=1)
    page = report(tmp_path, tmp_path / "report")
    assert page == tmp_path / "report" / "REPORT.md"
    assert "smoke" in page.read_text() and (tmp_path / "report" / "REPORT.html").is_file()


def test_train_returns_its_provenance_and_a_crash_as_a_failed_result():
    result = train(TrainConfig(dataset="synthetic", epochs=1, batch_size=64, test_subset=64))
    assert result.provenance["split_sizes"] == {"train": 922, "val": 102, "test": 64}
    assert result.provenance["param_count"] == result.param_count > 0
    with pytest.raises(UserError, match="batch-size 4096 is larger than the training set"):
        train(TrainConfig(dataset="synthetic", epochs=1, batch_size=4096))


def test_the_package_namespace_keeps_its_modules_and_the_api_its_functions():
    import ablations
    import ablations.api
    import ablations.run_grid
    import ablations.train

    assert type(ablations.train).__name__ == "module" and callable(ablations.api.train)
    assert ablations.run_grid.main is ablations.cli.grid.main
    assert ablations.api.run_grid.__module__ == "ablations.api"


def test_importing_the_api_loads_neither_torch_nor_pandas():
    code = "import sys, ablations; from ablations.api import run_grid; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _finished_at(results) -> dict[str, float]:
    with Store.open_existing(store_path(results)) as store:
        return {r["run_id"]: r["finished_at"] for r in store.runs()}


@pytest.mark.slow
def test_run_grid_with_worker_processes_from_a_script_without_a_main_guard(tmp_path):
    """Spawned workers must not re-run the caller's script (it would start the grid again in each)
    nor need it as a file (a script piped to python has none)."""
    script = (f"from ablations.api import run_grid\n"
              f"df = run_grid('smoke', results={str(tmp_path)!r}, only={{'seed': 0, 'augment': 'none'}}, workers=2).runs()\n"
              f"print('statuses', *df['status'])\n")
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "statuses done done" in proc.stdout
    assert "with 2 worker(s)" in proc.stdout


def test_a_mistyped_backend_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match="unknown backend 'Local'"):
        run_grid("smoke", results=tmp_path / "a", backend="Local")
    assert not (tmp_path / "a").exists()


def test_run_grid_from_a_thread_that_cannot_set_signal_handlers(tmp_path):
    found = {}

    def work():
        found["frame"] = run_grid("smoke", results=tmp_path, only={"augment": "none", "weight_decay": 0, "seed": 0},
                                  workers=1).runs()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=600)
    assert found["frame"]["status"].tolist() == ["done"]
