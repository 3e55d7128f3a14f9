"""The grid end to end, in real subprocesses on a real SQLite store."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.grid.spec import available_grids
from ablations.store.sqlite import Store, store_path

SMOKE_RUNS = 8


def grid_cmd(results: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ablations.run_grid", "--grid", "smoke", "--results", str(results), *args]


def run_grid(results: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(grid_cmd(results, *args), capture_output=True, text=True, timeout=timeout)


def rows(results: Path) -> list[tuple]:
    db = sqlite3.connect(store_path(results))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT run_id, status, attempts, (SELECT COUNT(*) FROM epochs e WHERE e.run_id = r.run_id) FROM runs r").fetchall()
    finally:
        db.close()


@pytest.mark.capability
def test_smoke_end_to_end_then_resume_skips_everything(results_dir):
    first = run_grid(results_dir, "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert f"report: {results_dir / 'REPORT.md'}" in first.stdout
    page = (results_dir / "REPORT.md").read_text()
    assert "- **grid**: smoke" in page and "8 of 8 runs are done" in page
    samples = results_dir / "figures" / "augment_samples.png"
    assert samples.read_bytes().startswith(b"\x89PNG")
    assert sum(line.startswith("done ") for line in first.stdout.splitlines()) == SMOKE_RUNS
    assert f"{SMOKE_RUNS} done, 0 diverged, 0 failed, 0 skipped" in first.stdout
    table = rows(results_dir)
    assert len(table) == SMOKE_RUNS and {r[1] for r in table} == {"done"} and {r[3] for r in table} == {1}
    with Store.open_existing(store_path(results_dir)) as store:
        runs = store.runs()
    # Chance is 0.1; a guesser passes 0.2 of 256 test images with probability < 1e-6. Every run measured
    # 0.94-1.00 in fp32 and bf16 (binomial std at 0.94: 0.015), so 0.8 fails only a run that did not learn.
    assert min(r["final_test_acc"] for r in runs) > 0.8
    assert all(r["provenance"]["torch"] and r["provenance"]["device_name"] for r in runs)

    again = run_grid(results_dir, "--no-report")
    assert again.returncode == 0
    assert f"0 done, 0 diverged, 0 failed, {SMOKE_RUNS} skipped" in again.stdout
    assert [r[:2] for r in rows(results_dir)] == [r[:2] for r in table]


def test_dry_run_lists_runs_and_touches_nothing(results_dir):
    proc = run_grid(results_dir, "--dry-run", "--axis", "schedule=constant,step", "--seeds", "3")
    assert proc.returncode == 0
    assert "24 runs (8 cells x 3 seeds); 0 finished, 24 to run" in proc.stdout
    assert not store_path(results_dir).exists()


@pytest.mark.slow
def test_sigkill_mid_grid_then_resume_runs_everything_exactly_once(results_dir):
    proc = subprocess.Popen(grid_cmd(results_dir, "--no-report", "--workers", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 900  # a loaded 2-core machine takes minutes per run
    while time.time() < deadline:  # wait for two finished runs, then kill mid-way through the third
        line = proc.stdout.readline()
        if line.startswith("done") and sum(r[1] == "done" for r in rows(results_dir)) >= 2:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = rows(results_dir)
    finished_before = {r[0] for r in before if r[1] == "done"}
    assert 2 <= len(finished_before) < SMOKE_RUNS
    assert any(r[1] == "running" for r in before)  # the killed run's claim is left behind

    resumed = run_grid(results_dir, "--no-report", "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr
    after = rows(results_dir)
    assert len(after) == SMOKE_RUNS and {r[1] for r in after} == {"done"}
    assert {r[3] for r in after} == {1}  # one epoch row per run: nothing duplicated
    assert {r[0]: r[2] for r in after if r[0] in finished_before} == {r: 1 for r in finished_before}
    assert f"{len(finished_before)} skipped" in resumed.stdout


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process, from /proc (psutil is not a dependency)."""
    table = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:  # it ended while we looked
            continue
        if stat:
            fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
            table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, as pid -> start time (which tells a pid reused later apart)."""
    table, found, frontier = process_table(), {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def survivors(processes: dict[int, str]) -> list[int]:
    table = process_table()
    # A zombie has ended; it only waits for its new parent (init here may never reap it).
    return [pid for pid, started in processes.items()
            if pid in table and table[pid][2] == started and table[pid][1] != "Z"]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to find the workers")
def test_sigkill_of_the_driver_takes_its_workers_and_resource_tracker_with_it(results_dir):
    proc = subprocess.Popen(grid_cmd(results_dir, "--no-report", "--workers", "2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    children: dict[int, str] = {}
    while time.time() < deadline and proc.poll() is None:  # both workers training, the tracker up
        children = descendants(proc.pid)
        commands = [cmdline(pid) for pid in children]
        workers = sum("spawn_main" in c for c in commands)
        tracker = any("resource_tracker" in c for c in commands)
        if workers == 2 and tracker and store_path(results_dir).exists() \
                and [r[1] for r in rows(results_dir)].count("running") == 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the grid did not start two workers in time (exit {proc.poll()})")
    children = {**descendants(proc.pid), **children}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while survivors(children) and time.time() < deadline:
        time.sleep(0.2)
    left = survivors(children)
    for pid in left:  # do not leak them into the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, [cmdline(pid) for pid in left]
    assert len(children) >= 3  # the control: the workers and the tracker were there to be killed


@pytest.mark.slow
def test_two_concurrent_runners_never_run_a_run_twice(results_dir):
    # one thread each: two runners sharing the cores must not oversubscribe them
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(grid_cmd(results_dir, "--no-report", "--workers", "1"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outputs]
    table = rows(results_dir)
    assert len(table) == SMOKE_RUNS and {r[1] for r in table} == {"done"}
    assert {r[2] for r in table} == {1}  # every run claimed and trained once, across both runners
    assert {r[3] for r in table} == {1}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_cleanly_with_a_summary_and_keeps_finished_runs(results_dir, sig):
    proc = subprocess.Popen(grid_cmd(results_dir, "--no-report", "--workers", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    while not proc.stdout.readline().startswith("done"):
        pass
    deadline = time.time() + 60
    while "running" not in [r[1] for r in rows(results_dir)] and time.time() < deadline:
        time.sleep(0.05)  # signal while the next run trains: its claim must be handed back too
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted:" in out and "run the same command again to resume" in out
    statuses = [r[1] for r in rows(results_dir)]
    assert "running" not in statuses and statuses.count("done") >= 1  # claims handed back, results kept


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to find the workers")
def test_sigterm_ends_the_grid_and_its_workers_at_once_not_when_their_runs_end(results_dir):
    # Runs of 400 epochs (minutes each): a grid that waited for its workers' runs would take that long to exit.
    proc = subprocess.Popen(grid_cmd(results_dir, "--no-report", "--workers", "2", "--set", "epochs=400",
                                     "--only", "seed=0"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline, children = time.time() + 300, {}
    while time.time() < deadline and proc.poll() is None:
        children = descendants(proc.pid)
        if sum("spawn_main" in cmdline(pid) for pid in children) == 2 and store_path(results_dir).exists() \
                and [r[1] for r in rows(results_dir)].count("running") == 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the grid did not start two runs in time (exit {proc.poll()})")
    time.sleep(2)  # both runs inside their first epochs
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        out = ""
    waited = time.time() - sent
    time.sleep(1)
    left = survivors({**children, proc.pid: process_table().get(proc.pid, (0, "", ""))[2]})
    for pid in left:  # a grid that did not stop must not train on beside the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert waited < 20  # not the minutes the two runs had left
    assert not left, [cmdline(pid) for pid in left]
    assert proc.wait() == 130 and "run the same command again to resume" in out
    assert "running" not in [r[1] for r in rows(results_dir)]  # both claims handed back


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_grid_goes_on(results_dir):
    # lr=1e12 makes every loss non-finite: recorded as diverged, not raised through the grid
    proc = run_grid(results_dir, "--no-report", "--workers", "1", "--set", "lr=1e12", "--only", "seed=0")
    assert proc.returncode == 0, proc.stderr
    assert "0 done, 4 diverged, 0 failed" in proc.stdout
    with Store.open_existing(store_path(results_dir)) as store:
        assert {r["diverged_epoch"] for r in store.runs("diverged")} == {1}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--grid", "nope"], f"error: unknown grid 'nope'; choose one of: {', '.join(available_grids())}, or give a .toml path"),
        (["--axis", "colour=red"], "error: unknown setting 'colour'; choose one of:"),
        (["--axis", "augment=none,mixup"], "error: unknown augmentation policy 'mixup'"),
        (["--set", "weight-decay=-1"], "error: weight-decay must be 0 or more"),
        (["--only", "seed=7"], "error: no run of grid 'smoke' matches --only seed=7"),
        (["--backend", "slurm"], "error: unknown backend 'slurm'; choose one of: local, ray"),
        (["--set", "dataset=mnist", "--set", "train_subset=99999"], "error: train-subset 99999 is larger"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_store_untouched(results_dir, args, message):
    cmd = [sys.executable, "-m", "ablations.run_grid", "--grid", "smoke", "--results", str(results_dir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert not store_path(results_dir).exists()


def test_malformed_toml_exits_2(results_dir, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [1,\n")
    proc = subprocess.run([sys.executable, "-m", "ablations.run_grid", "--grid", str(bad), "--results", str(results_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bad.toml is not valid TOML" in proc.stderr
    assert not store_path(results_dir).exists()


@pytest.mark.parametrize("requested,gpus,device,expected", [
    (None, 0, "auto", 0.0), (None, 8, "auto", 0.25), (None, 8, "cpu", 0.0), (0.5, 8, "auto", 0.5), (0, 8, "cpu", 0.0),
])
def test_ray_gives_each_run_a_gpu_share_where_the_cluster_has_gpus(requested, gpus, device, expected):
    from ablations.grid.executors import ray_gpu_share

    assert ray_gpu_share(requested, gpus, device) == expected


def test_ray_refuses_no_gpu_share_on_a_cluster_with_gpus():
    from ablations.errors import UserError
    from ablations.grid.executors import ray_gpu_share

    with pytest.raises(UserError, match="--gpus-per-run 0 on a Ray cluster with 8 GPU.*would train every run on a CPU"):
        ray_gpu_share(0.0, 8, "auto")


def test_the_grid_restores_the_callers_signal_handlers():
    from ablations.grid.runner import sigterm_as_interrupt

    def mine(signum, frame):
        pass

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not mine
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("grid, shown, hidden", [("notebook_pilot_6k", "val acc  97.10%", "test acc"),
                                                 ("quick", "test acc  98.30%", "val acc")])
def test_each_finished_run_shows_the_grids_endpoint_so_a_validation_pilot_never_shows_test_accuracy(grid, shown,
                                                                                                   hidden):
    from ablations.grid.runner import finish_line
    from ablations.grid.spec import load_grid

    g = load_grid(grid)
    result = {"status": "done", "final_val_acc": 0.971, "final_test_acc": 0.983, "best_val_acc": 0.975, "wall_s": 1.0}
    line = finish_line(g, g.configs()[0], result)
    assert shown in line and hidden not in line
