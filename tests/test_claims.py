"""A run is trained to completion and stored by exactly one live runner, whatever the store does.

The first tests drive `Claims` (the heartbeat thread) against a real store and a real write lock
held by another connection, with the windows shortened so they take seconds. The grid tests run
real runners as subprocesses with the real windows: another connection holding the write lock
for 45 s (longer than SQLite's 30 s busy timeout), and a claim forced stale while its runner is
paused (SIGSTOP), as a suspended machine would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.config import TrainConfig
from ablations.grid import claims as claims_module
from ablations.grid.claims import Claims
from ablations.store.sqlite import STORE_NAME, Store, new_owner, store_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def short_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The windows at a tenth or less, in the same proportions: a heartbeat every 0.2 s, given up after 2 s."""
    monkeypatch.setattr(claims_module, "HEARTBEAT_EVERY_S", 0.2)
    monkeypatch.setattr(claims_module, "GIVE_UP_AFTER_S", 2.0)
    monkeypatch.setattr(claims_module, "RENEW_WAIT_S", 0.1)
    monkeypatch.setattr(claims_module, "FIRST_RETRY_S", 0.05)


def claimed_run(path: Path) -> tuple[str, str, int]:
    cfg = TrainConfig(dataset="synthetic", epochs=1)
    owner = new_owner()
    with Store(path) as store:
        store.enqueue([cfg], grid="g")
        attempt = store.claim(cfg.run_id, owner)
    return cfg.run_id, owner, attempt


def hold_write_lock(path: Path, seconds: float) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    time.sleep(seconds)
    db.execute("ROLLBACK")
    db.close()


def heartbeat_of(path: Path) -> float:
    with Store.open_existing(path) as store:
        return store.runs()[0]["heartbeat"]


def test_a_lock_shorter_than_the_window_is_retried_and_logged_once(tmp_path: Path, short_windows) -> None:
    path = tmp_path / STORE_NAME
    run_id, owner, attempt = claimed_run(path)
    lines: list[str] = []
    with Claims(path, owner, lines.append) as claims:
        claim = claims.hold(run_id, attempt)
        time.sleep(0.5)
        hold_write_lock(path, 1.2)  # several renewals fail in a row meanwhile
        time.sleep(0.6)
        renewed = heartbeat_of(path)
    assert claim.lost is None and not claim.stop_file.exists()
    assert time.time() - renewed < 1.0  # renewed again after the lock
    assert len(lines) == 1 and lines[0].startswith("warning: cannot renew this runner's claims in ")
    assert "database is locked" in lines[0] and "retrying" in lines[0]


def test_a_claim_not_renewed_within_the_window_is_given_up_and_its_run_told_to_stop(tmp_path: Path,
                                                                                     short_windows) -> None:
    path = tmp_path / STORE_NAME
    run_id, owner, attempt = claimed_run(path)
    lines: list[str] = []
    with Claims(path, owner, lines.append) as claims:
        claim = claims.hold(run_id, attempt)
        hold_write_lock(path, 3.0)  # past the 2 s window
        assert claim.lost == "its claim could not be renewed for 2 s"
        assert claim.stop_file.exists()
        time.sleep(0.5)
        assert claims.get(run_id).lost == claim.lost  # lost stays lost: no renewal after giving up
    assert len(lines) == 1


def test_a_claim_taken_over_is_lost_at_the_next_heartbeat(tmp_path: Path, short_windows) -> None:
    path = tmp_path / STORE_NAME
    run_id, owner, attempt = claimed_run(path)
    with Claims(path, owner, print) as claims:
        claim = claims.hold(run_id, attempt)
        with Store(path) as other:
            assert other.claim(run_id, new_owner(), stale_after_s=0) == attempt + 1
        time.sleep(0.6)
        assert claim.lost == "another runner took its claim over" and claim.stop_file.exists()


# ---- real runners, real windows -------------------------------------------------------
# One long run of the smoke grid: about 0.8 s an epoch on a busy 2-core CPU, so it still trains
# when the second runner arrives a minute and more later.
ONE_RUN = ("--grid", "smoke", "--seeds", "1", "--only", "augment=none", "--only", "weight_decay=0",
           "--set", "train_subset=512", "--workers", "1", "--no-report")


def runner(results: Path, epochs: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ablations.run_grid", *ONE_RUN, "--set", f"epochs={epochs}",
                             "--results", str(results)], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def row(results: Path) -> tuple[str, int, int]:
    """The run's status, attempts and stored epochs."""
    if not store_path(results).exists():
        return "", 0, 0
    db = sqlite3.connect(f"{store_path(results).as_uri()}?mode=ro", uri=True)
    try:
        found = db.execute("SELECT status, attempts, (SELECT count(*) FROM epochs) FROM runs").fetchone()
    except sqlite3.OperationalError:  # the grid has created the file, not yet its tables
        found = None
    finally:
        db.close()
    return found or ("", 0, 0)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def finish_lines(*outputs: str) -> list[str]:
    return [line for out in outputs for line in out.splitlines() if line.startswith(("done ", "diverged ", "failed "))]


@pytest.mark.slow  # real windows: a 45 s write lock, a claim left to go stale
def test_a_write_lock_held_past_the_busy_timeout_leaves_the_run_to_its_one_runner(results_dir: Path) -> None:
    """The issue's reproduction: the heartbeat thread used to die of "database is locked" after 30 s,
    the claim went stale, and a second runner trained the same run while the first was alive."""
    epochs = 150
    first = runner(results_dir, epochs)
    wait_for(lambda: row(results_dir)[0] == "running", 120, "the run to start")
    locked_at = time.monotonic()
    hold_write_lock(store_path(results_dir), 45.0)
    time.sleep(max(0.0, locked_at + 55 - time.monotonic()))  # a dead heartbeat's claim is stale from here on
    assert first.poll() is None, "the run ended before the second runner came: the test proves nothing"
    second = runner(results_dir, epochs)
    while second.poll() is None:  # fail as soon as a second live runner trains the run, not after both finish
        if row(results_dir)[1] > 1 and first.poll() is None:
            for proc in (first, second):
                proc.kill()
            pytest.fail("a second runner took over the claim of a live runner: the run trains twice")
        time.sleep(0.5)
    second_out, second_err = second.communicate()
    assert first.poll() is None, "the first runner ended before the second tried to claim: the test proves nothing"
    first_out, first_err = first.communicate(timeout=600)

    assert (first.returncode, second.returncode) == (0, 0), (first_err[-3000:], second_err[-3000:])
    assert "Traceback" not in first_err and "Exception in thread" not in first_err, first_err[-3000:]
    assert len(finish_lines(first_out, second_out)) == 1 and finish_lines(first_out) == finish_lines(first_out, second_out)
    assert "1 left to another runner" in second_out
    warnings = [line for line in first_err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot renew this runner's claims" in warnings[0], first_err[-3000:]
    assert row(results_dir) == ("done", 1, epochs)


@pytest.mark.slow  # real windows: a 45 s write lock, a claim left to go stale
def test_a_runner_whose_claim_was_taken_over_stops_and_its_result_is_dropped(results_dir: Path) -> None:
    epochs = 40
    first = runner(results_dir, epochs)
    wait_for(lambda: row(results_dir)[0] == "running", 120, "the run to start")
    first.send_signal(signal.SIGSTOP)  # a suspended machine: alive, but its heartbeat stops
    try:
        with sqlite3.connect(store_path(results_dir), isolation_level=None) as db:
            db.execute("UPDATE runs SET heartbeat = 0")  # its claim now looks a day stale
        second = runner(results_dir, epochs)
        wait_for(lambda: row(results_dir)[1] == 2, 120, "the second runner to take the claim over")
    finally:
        first.send_signal(signal.SIGCONT)
    first_out, first_err = first.communicate(timeout=600)
    second_out, second_err = second.communicate(timeout=600)

    assert (first.returncode, second.returncode) == (0, 0), (first_err[-3000:], second_err[-3000:])
    assert finish_lines(first_out) == [] and len(finish_lines(second_out)) == 1  # trained to the end once
    dropped = [line for line in first_err.splitlines() if line.startswith("warning:")]
    assert len(dropped) == 1 and "stopped: another runner took its claim over; its result is dropped" in dropped[0]
    assert "1 handed back (claim lost)" in first_out
    assert row(results_dir) == ("done", 2, epochs)  # the second runner's result, whole
