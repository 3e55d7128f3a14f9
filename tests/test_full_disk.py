"""A full disk, for real: a small tmpfs as the results folder, filled to within a few pages.

Every command that writes ends in one line, `error: no space left on <path>; free space and run
the same command again`, and exit 2; what was there before stays as it was (a report or an export
is renamed into place whole, a run is one transaction), and the same command completes once
space is freed. Mounting needs root (this project's CI runs as root); elsewhere these tests are
skipped, saying so.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ablations.grid.spec import load_grid
from ablations.store.sqlite import STORE_NAME, Store, new_owner

REPO = Path(__file__).resolve().parents[1]
DISK_BYTES = 2 * 1024 * 1024


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test alone."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a real full disk) needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Take the disk's free space down to about `leave` bytes with one file; removing it frees the space."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    with open(filler, "ab") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.name != "filler"}


def finished_smoke_store(results: Path) -> None:
    """The smoke grid's store with every run done (one epoch each), as a grid leaves it, without training."""
    grid = load_grid("smoke")
    with Store(results / STORE_NAME) as store:
        store.enqueue(grid.configs(), grid=grid.name, grid_spec=grid.spec())
        owner = new_owner()
        for cfg in grid.configs():
            assert store.claim(cfg.run_id, owner)
            epochs = [{"epoch": 1, "lr": 0.1, "train_loss": 0.5, "val_acc": 0.9, "test_acc": 0.9}]
            store.finish(cfg.run_id, owner, {"status": "done", "final_test_acc": 0.9, "final_val_acc": 0.9,
                                             "wall_s": 1.0, "epochs": epochs}, {"host": "test"})
        assert store.make_publishable()


def command(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def no_space_line(proc: subprocess.CompletedProcess, path: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: no space left on {path}; free space and run the same command again"], proc.stderr[-3000:]


@pytest.mark.parametrize("before", ["a previous report", "no report yet"])
def test_a_report_on_a_full_disk_is_one_line_and_leaves_the_previous_report_whole(disk: Path, before: str) -> None:
    finished_smoke_store(disk)
    if before == "a previous report":
        assert command("ablations.report", "--results", str(disk)).returncode == 0
    previous = snapshot(disk)
    filler = fill(disk, leave=64 * 1024)  # a report is about 600 KB

    proc = command("ablations.report", "--results", str(disk))

    no_space_line(proc, disk)
    assert snapshot(disk) == previous  # the previous report, byte for byte, or none; no staging folder
    filler.unlink()
    again = command("ablations.report", "--results", str(disk))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (disk / "REPORT.md").read_text().startswith("# ")


def test_an_export_on_a_full_disk_is_one_line_and_leaves_no_partial_file(disk: Path) -> None:
    finished_smoke_store(disk)
    previous = snapshot(disk)
    filler = fill(disk, leave=4 * 1024)  # less than runs.csv

    proc = command("ablations.store", "export", "--results", str(disk))

    no_space_line(proc, disk)
    assert snapshot(disk) == previous
    filler.unlink()
    again = command("ablations.store", "export", "--results", str(disk))
    assert again.returncode == 0, again.stderr[-3000:]
    assert [Path(p).name for p in again.stdout.split()] == ["runs.csv", "epochs.csv"]


def stored(results: Path) -> list[tuple]:
    with Store.open_existing(results / STORE_NAME) as store:
        return [(r["run_id"], r["status"], r["finished_at"], r["final_test_acc"]) for r in store.runs()]


def test_a_grid_on_a_full_disk_stops_with_one_line_hands_its_claim_back_and_resumes(disk: Path) -> None:
    results = disk / "results"
    grid = ("ablations.run_grid", "--grid", "smoke", "--results", str(results), "--workers", "1", "--no-report")
    assert command(*grid, "--only", "seed=0").returncode == 0  # four runs done while there was room
    finished = stored(results)
    filler = fill(disk, leave=128 * 1024)  # room for the WAL, its index and a run or two; four do not fit

    proc = command(*grid, timeout=600)

    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no space left on {results / STORE_NAME}; free space and run the same command again"]
    before = stored(results)
    assert "running" not in {status for _, status, _, _ in before}  # the claim was handed back
    assert "queued" in {status for _, status, _, _ in before}  # the control: the disk filled before the grid ended
    finished = [r for r in before if r[1] == "done"]
    filler.unlink()

    again = command(*grid, timeout=600)

    assert again.returncode == 0, again.stderr[-3000:]
    after = stored(results)
    assert {status for _, status, _, _ in after} == {"done"} and len(after) == 8
    assert set(finished) <= set(after)  # every run finished before the disk filled is there as it was
    assert f"{8 - len(finished)} done, 0 diverged, 0 failed, {len(finished)} skipped" in again.stdout


def test_a_store_that_cannot_be_created_on_a_full_disk_leaves_nothing_to_trip_the_next_grid(disk: Path) -> None:
    results = disk / "results"
    grid = ("ablations.run_grid", "--grid", "smoke", "--results", str(results), "--workers", "1", "--no-report",
            "--only", "seed=0", "--only", "augment=none")
    filler = fill(disk, leave=48 * 1024)  # less than a new store's tables, WAL and index

    no_space_line(command(*grid), results / STORE_NAME)
    assert not (results / STORE_NAME).exists()  # no half-made store, which the next grid would refuse
    filler.unlink()
    again = command(*grid)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 done, 0 diverged, 0 failed, 0 skipped" in again.stdout
