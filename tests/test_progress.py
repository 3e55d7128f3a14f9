"""A grid's progress bar shows each run in flight at its epoch, so a run of hours shows that it moves."""

import subprocess
import sys

import pytest

from ablations.grid.runner import EpochProgress


@pytest.mark.parametrize("workers", ["1", "2"])  # in this process, and in worker processes
def test_the_bar_shows_the_runs_in_flight_at_their_epoch(results_dir, workers):
    proc = subprocess.run([sys.executable, "-m", "ablations.run_grid", "--grid", "smoke", "--results", str(results_dir),
                           "--set", "epochs=3", "--only", "seed=0", "--only", "augment=none", "--workers", workers,
                           "--no-report"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/3" in proc.stderr and "2/3" in proc.stderr  # heard of as the epochs ended, not at the end
    assert "2 done" in proc.stdout


def test_the_note_lists_runs_in_the_order_they_started_and_drops_a_run_once_it_ends():
    progress = EpochProgress({"a": 120, "b": 120, "c": 60})
    progress.epoch_ended("a", 37)
    progress.epoch_ended("b", 1)
    progress.epoch_ended("a", 38)
    assert progress.note() == "epoch 38/120, 1/120"
    progress.run_ended("a")
    progress.epoch_ended("a", 120)  # a last epoch heard of after the run's result: not shown again
    progress.epoch_ended("zzz", 3)  # not a run of this grid
    assert progress.note() == "epoch 1/120"
    progress.run_ended("b")
    assert progress.note() == ""
