"""The run store: idempotent queue, exclusive claims, atomic results, crash and concurrency safety.

Every test uses a real SQLite file under tmp_path; the concurrency and crash tests use real
processes because in-process threads would share one connection and prove nothing.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.config import TrainConfig
from ablations.errors import UserError
from ablations.store.export import export_csv
from ablations.store.read import in_wal_mode
from ablations.store.sqlite import STORE_NAME, Store, new_owner

REPO = Path(__file__).resolve().parents[1]
PROVENANCE = {"git_commit": "abc123", "torch": None, "host": "test"}


def configs(n: int) -> list[TrainConfig]:
    return [TrainConfig(dataset="synthetic", seed=i, epochs=1) for i in range(n)]


def result(n_epochs: int = 2, status: str = "done", **extra: object) -> dict:
    epochs = [
        {"epoch": e, "lr": 0.1, "train_loss": 1.0 / (e + 1), "train_acc": 0.5, "test_loss": 1.1,
         "test_acc": 0.4 + e / 100, "seconds": 0.5, "images_per_s": 1000.0}
        for e in range(n_epochs)
    ]
    return {"status": status, "epochs": epochs, "wall_s": 1.0, "final_test_acc": 0.4, **extra}


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / STORE_NAME) as s:
        yield s


def python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


# ---- queue and results -----------------------------------------------------------------
def test_enqueue_is_idempotent(store: Store) -> None:
    assert store.enqueue(configs(5), grid="g") == 5
    assert store.enqueue(configs(5), grid="g") == 0
    assert store.enqueue(configs(7), grid="g") == 2
    assert len(store.runs()) == 7
    assert store.counts() == {"queued": 7, "running": 0, "done": 0, "failed": 0, "diverged": 0}
    run = store.runs()[0]
    cfg = configs(1)[0]
    assert (run["run_id"], run["cell_id"], run["grid"]) == (cfg.run_id, cfg.cell_id, "g")
    assert TrainConfig.from_mapping(run["config"]) == cfg


def test_store_reopens_with_its_data(tmp_path: Path) -> None:
    with Store(tmp_path / "sub" / STORE_NAME) as s:
        s.enqueue(configs(3), grid=None)
    with Store.open_existing(tmp_path / "sub" / STORE_NAME) as s:
        assert s.counts()["queued"] == 3
    assert in_wal_mode(tmp_path / "sub" / STORE_NAME)  # read as it is: a reader switches nothing


def test_finish_writes_run_and_epochs(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    owner = new_owner()
    assert store.claim(cfg.run_id, owner)
    store.finish(cfg.run_id, owner, result(3, best_val_acc=0.42, best_val_epoch=2, peak_memory_bytes=123), PROVENANCE)
    (run,) = store.runs("done")
    assert run["final_test_acc"] == 0.4 and run["best_val_acc"] == 0.42 and run["best_val_epoch"] == 2
    assert run["peak_memory_bytes"] == 123
    assert run["final_train_acc"] is None and run["error"] is None  # missing keys are NULL
    assert run["owner"] is None and run["attempts"] == 1 and run["finished_at"] >= run["started_at"]
    assert run["provenance"] == PROVENANCE
    assert [e["epoch"] for e in store.epochs(cfg.run_id)] == [0, 1, 2]
    assert store.status_of([cfg.run_id, "missing"]) == {cfg.run_id: "done"}


def test_a_claim_finishes_once(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    owner = new_owner()
    attempt = store.claim(cfg.run_id, owner)
    assert attempt == 1
    assert store.finish(cfg.run_id, owner, result(4), PROVENANCE, attempt=attempt)
    assert not store.finish(cfg.run_id, owner, result(2, status="diverged", diverged_epoch=1), PROVENANCE,
                            attempt=attempt)  # the claim ended with the first result
    assert len(store.epochs()) == 4
    (run,) = store.runs()
    assert (run["status"], run["diverged_epoch"]) == ("done", None)


def test_a_runner_that_lost_its_claim_writes_nothing(store: Store) -> None:
    """The check and the write are one transaction: the taker's result stays, the loser's is dropped."""
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    first, second = new_owner(), new_owner()
    assert store.claim(cfg.run_id, first) == 1
    time.sleep(0.05)
    assert store.claim(cfg.run_id, second, stale_after_s=0.02) == 2  # the first looked dead
    assert store.finish(cfg.run_id, second, result(3), {"by": "second"}, attempt=2)
    assert not store.finish(cfg.run_id, first, result(5), {"by": "first"}, attempt=1)
    assert not store.fail(cfg.run_id, first, "late", attempt=1) and not store.release(cfg.run_id, first, attempt=1)
    (run,) = store.runs()
    assert (run["status"], run["provenance"], run["attempts"]) == ("done", {"by": "second"}, 2)
    assert len(store.epochs()) == 3


def test_an_owner_holds_only_its_latest_attempt(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    owner = new_owner()
    assert store.claim(cfg.run_id, owner) == 1
    time.sleep(0.05)
    assert store.claim(cfg.run_id, owner, stale_after_s=0.02) == 2
    assert not store.heartbeat(cfg.run_id, owner, attempt=1) and store.heartbeat(cfg.run_id, owner, attempt=2)
    assert not store.finish(cfg.run_id, owner, result(1), PROVENANCE, attempt=1)
    assert store.finish(cfg.run_id, owner, result(1), PROVENANCE, attempt=2)


def test_failed_result_never_overwrites_a_finished_run(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    owner = new_owner()
    store.claim(cfg.run_id, owner)
    store.finish(cfg.run_id, owner, result(2), PROVENANCE)
    store.finish(cfg.run_id, owner, result(0, status="failed", error="late"), PROVENANCE)
    assert not store.fail(cfg.run_id, owner, "late")
    assert store.status_of([cfg.run_id]) == {cfg.run_id: "done"} and len(store.epochs()) == 2


def test_fail_and_release(store: Store) -> None:
    a, b = configs(2)
    store.enqueue([a, b], grid=None)
    owner = new_owner()
    store.claim(a.run_id, owner)
    store.claim(b.run_id, owner)
    assert store.fail(a.run_id, owner, "CUDA out of memory")
    assert store.release(b.run_id, owner)
    assert store.status_of([a.run_id, b.run_id]) == {a.run_id: "failed", b.run_id: "queued"}
    assert store.runs("failed")[0]["error"] == "CUDA out of memory"
    assert store.claim(a.run_id, new_owner())  # a failed run is retried
    assert store.runs("running")[0]["attempts"] == 2


# ---- claims ----------------------------------------------------------------------------
def test_claim_is_exclusive(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    first, second = new_owner(), new_owner()
    assert first != second
    assert store.claim(cfg.run_id, first)
    assert not store.claim(cfg.run_id, second)
    assert not store.claim("no-such-run", second)
    assert store.heartbeat(cfg.run_id, first)
    assert not store.heartbeat(cfg.run_id, second)


def test_done_and_diverged_runs_are_never_claimed(store: Store) -> None:
    done, diverged = configs(2)
    store.enqueue([done, diverged], grid=None)
    owner = new_owner()
    for cfg, status in ((done, "done"), (diverged, "diverged")):
        store.claim(cfg.run_id, owner)
        store.finish(cfg.run_id, owner, result(1, status=status), PROVENANCE)
        assert not store.claim(cfg.run_id, new_owner(), stale_after_s=0)


def test_stale_claim_is_taken_over(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    dead, alive = new_owner(), new_owner()
    assert store.claim(cfg.run_id, dead)
    assert not store.claim(cfg.run_id, alive, stale_after_s=60)
    time.sleep(0.05)
    assert store.claim(cfg.run_id, alive, stale_after_s=0.02)
    assert not store.heartbeat(cfg.run_id, dead)
    assert not store.release(cfg.run_id, dead)  # the old owner cannot undo the takeover
    assert store.heartbeat(cfg.run_id, alive)
    (run,) = store.runs()
    assert (run["owner"], run["attempts"], run["status"]) == (alive, 2, "running")


# ---- processes -------------------------------------------------------------------------
WORKER = """
import json, sys, time
from ablations.store.sqlite import Store, new_owner
path, ids = sys.argv[1], sys.argv[2].split(",")
owner, finished = new_owner(), []
with Store(path) as store:
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other worker
    for run_id in ids:
        if store.claim(run_id, owner):
            time.sleep(0.01)  # "train", so the two processes interleave
            epochs = [{"epoch": e, "test_acc": 0.5} for e in range(3)]
            store.finish(run_id, owner, {"status": "done", "epochs": epochs}, {"owner": owner})
            finished.append(run_id)
print(json.dumps({"owner": owner, "finished": finished}))
"""


def test_two_processes_share_a_store(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    cfgs = configs(40)
    ids = [c.run_id for c in cfgs]
    with Store(path) as s:
        s.enqueue(cfgs, grid="g")
    workers = [python(WORKER, str(path), ",".join(ids)) for _ in range(2)]
    assert [w.stdout.readline().strip() for w in workers] == ["ready", "ready"]
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    reports = []
    for w in workers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        reports.append(json.loads(out))
    finished = [set(r["finished"]) for r in reports]
    assert sum(len(r["finished"]) for r in reports) == 40  # claims that succeeded
    assert finished[0] | finished[1] == set(ids) and not finished[0] & finished[1]
    assert all(finished), "one worker did all the runs: the test did not exercise concurrency"
    with Store.open_existing(path) as s:
        runs = s.runs()
        assert {r["status"] for r in runs} == {"done"} and {r["attempts"] for r in runs} == {1}
        for report in reports:  # each run's result came from the owner that claimed it
            assert {r["run_id"] for r in runs if r["provenance"]["owner"] == report["owner"]} == set(report["finished"])
        assert len(s.epochs()) == 40 * 3


CRASHER = """
import json, sys
from ablations.store.sqlite import Store, new_owner
path, victim, others = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
owner = new_owner()
store = Store(path)
assert store.claim(victim, owner)
print(owner, flush=True)
epochs = [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "test_acc": 0.5} for e in range(200)]
for run_id in others:
    assert store.claim(run_id, owner)
    store.finish(run_id, owner, {"status": "done", "epochs": epochs}, {})
    print(run_id, flush=True)
sys.stdin.readline()  # ran out of work before the kill: wait for it
"""


def test_sigkill_mid_way_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    cfgs = configs(41)
    victim, others = cfgs[0].run_id, [c.run_id for c in cfgs[1:]]
    with Store(path) as s:
        s.enqueue(cfgs, grid=None)
    proc = python(CRASHER, str(path), victim, ",".join(others))
    dead_owner = proc.stdout.readline().strip()
    reported = [proc.stdout.readline().strip() for _ in range(5)]
    proc.kill()  # SIGKILL while it keeps finishing runs
    proc.wait(timeout=10)
    assert proc.returncode == -9
    reported += [line.strip() for line in proc.stdout if line.strip()]
    proc.stdout.close()
    proc.stdin.close()
    proc.stderr.close()

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Store(path) as s:  # it claims below: a writer
        status = s.status_of(others)
        assert all(status[r] == "done" for r in reported)
        epochs_per_run: dict[str, int] = {}
        for e in s.epochs():
            epochs_per_run[e["run_id"]] = epochs_per_run.get(e["run_id"], 0) + 1
        for run_id, st in status.items():  # a run is either all there or not there at all
            assert st in ("done", "running", "queued")
            assert epochs_per_run.get(run_id, 0) == (200 if st == "done" else 0)
        (held,) = [r for r in s.runs() if r["run_id"] == victim]
        assert (held["status"], held["owner"]) == ("running", dead_owner)
        # its process is gone from this host: the claim is taken over at once, staleness aside
        assert s.claim(victim, new_owner(), stale_after_s=3600)
        (held,) = [r for r in s.runs() if r["run_id"] == victim]
        assert held["owner"] != dead_owner and held["attempts"] == 2
        assert not s.heartbeat(victim, dead_owner)


# ---- reading and the command line ------------------------------------------------------
def test_export_csv(store: Store, tmp_path: Path) -> None:
    cfgs = configs(3)
    store.enqueue(cfgs, grid="g")
    owner = new_owner()
    for cfg in cfgs[:2]:
        store.claim(cfg.run_id, owner)
        store.finish(cfg.run_id, owner, result(3), PROVENANCE)
    runs_csv, epochs_csv = export_csv(store, tmp_path / "out")
    assert (runs_csv.name, epochs_csv.name) == ("runs.csv", "epochs.csv")
    with open(runs_csv, newline="") as f:
        runs = list(csv.DictReader(f))
    with open(epochs_csv, newline="") as f:
        epochs = list(csv.DictReader(f))
    assert len(runs) == 3 and len(epochs) == 6
    assert {f"config.{k}" for k in cfgs[0].to_dict()} <= set(runs[0])
    assert "config" not in runs[0]
    assert [r["config.seed"] for r in runs] == ["0", "1", "2"]
    assert json.loads(runs[0]["provenance"]) == PROVENANCE
    assert set(epochs[0]) == {"run_id", "epoch", "lr", "lr_last", "train_loss", "train_acc", "val_loss", "val_acc",
                              "test_loss", "test_acc", "seconds", "images_per_s"}


GRID = {"name": "g", "axes": {"weight_decay": [0.0, 0.001]}, "fixed": {"epochs": 2}, "seeds": [0, 1]}


def test_a_store_holds_one_grid_and_refuses_another(store: Store) -> None:
    store.enqueue(configs(2), grid="g", grid_spec=GRID)
    assert store.grid() == GRID
    store.enqueue(configs(3), grid="g", grid_spec={**GRID, "seeds": [2]})  # more seeds of the same grid
    assert store.grid()["seeds"] == [0, 1, 2]
    for other in ({**GRID, "name": "h"}, {**GRID, "axes": {"weight_decay": [0.0]}}, {**GRID, "fixed": {"epochs": 3}}):
        with pytest.raises(UserError, match="holds grid 'g' with other settings.*another --results folder"):
            store.enqueue(configs(4), grid=other["name"], grid_spec=other)
        with pytest.raises(UserError, match="holds grid 'g'"):
            store.check_grid(other)
    assert len(store.runs()) == 3 and store.grid()["seeds"] == [0, 1, 2]  # the refused enqueues wrote nothing


def test_an_older_store_is_upgraded_in_place_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, cell_id TEXT NOT NULL, seed INTEGER NOT NULL,
            config TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'queued', error TEXT, owner TEXT, heartbeat REAL,
            attempts INTEGER NOT NULL DEFAULT 0, started_at REAL, finished_at REAL, wall_s REAL,
            final_test_acc REAL, final_train_acc REAL, best_test_acc REAL, final_test_loss REAL,
            final_train_loss REAL, train_images_per_s REAL, peak_memory_bytes INTEGER, diverged_epoch INTEGER,
            provenance TEXT, grid TEXT);
        CREATE TABLE epochs (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, lr REAL, train_loss REAL,
            train_acc REAL, test_loss REAL, test_acc REAL, seconds REAL, images_per_s REAL,
            PRIMARY KEY (run_id, epoch));
        INSERT INTO runs (run_id, cell_id, seed, config, status, final_test_acc) VALUES ('r', 'c', 0, '{}', 'done', 0.9);
    """)
    old.close()
    with Store.open_existing(path) as reader:  # reading never writes
        assert reader.runs()[0]["final_test_acc"] == 0.9 and "final_val_acc" not in reader.runs()[0]
    with Store(path) as writer:
        run = writer.runs()[0]
        assert run["final_test_acc"] == 0.9 and run["final_val_acc"] is None and run["best_test_acc"] is None
        cfg = configs(1)[0]
        writer.enqueue([cfg])
        owner = new_owner()
        writer.claim(cfg.run_id, owner)
        writer.finish(cfg.run_id, owner, result(2, final_val_acc=0.5), PROVENANCE)
        assert writer.runs("done")[-1]["final_val_acc"] == 0.5


def test_open_existing_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / STORE_NAME
    with pytest.raises(UserError, match="run_grid") as err:
        Store.open_existing(missing)
    assert str(missing) in str(err.value)
    assert not missing.exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="junk.sqlite"):
        Store.open_existing(junk)
    with pytest.raises(UserError, match="junk.sqlite"):
        Store(junk)
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(UserError, match="not a run store"):
        Store.open_existing(empty)
    assert empty.stat().st_size == 0  # looking must not turn it into a database
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UserError, match="not a run store"):
        Store(other)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ablations.store", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_missing_store_exits_2(tmp_path: Path) -> None:
    proc = cli("summary", "--results", str(tmp_path / "empty"))
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tmp_path / "empty") in lines[0]


def test_cli_summary_and_export(tmp_path: Path) -> None:
    with Store(tmp_path / STORE_NAME) as s:
        s.enqueue(configs(2), grid=None)
    summary = cli("summary", "--results", str(tmp_path))
    assert summary.returncode == 0 and "queued    2" in summary.stdout and "total     2" in summary.stdout
    export = cli("export", "--results", str(tmp_path), "--out", str(tmp_path / "csv"))
    assert export.returncode == 0, export.stderr
    paths = [Path(p) for p in export.stdout.split()]
    assert [p.name for p in paths] == ["runs.csv", "epochs.csv"] and all(p.is_file() for p in paths)


def test_claim_of_another_host_waits_for_staleness(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid=None)
    remote = "some-other-host:1:abcd1234"  # pid 1 there is none of this host's business
    assert store.claim(cfg.run_id, remote)
    assert not store.claim(cfg.run_id, new_owner(), stale_after_s=3600)
    assert store.claim(cfg.run_id, new_owner(), stale_after_s=0)


# ---- publishing, read-only and damaged stores ------------------------------------------
def finished_store(path: Path, n: int = 6) -> None:
    with Store(path) as s:
        s.enqueue(configs(n), grid="g")
        owner = new_owner()
        for cfg in configs(n):
            s.claim(cfg.run_id, owner)
            s.finish(cfg.run_id, owner, result(3), {**PROVENANCE, "notes": "x" * 3000})  # a page or so each
        assert s.make_publishable()


def test_a_published_store_is_one_file_that_readers_leave_alone(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    finished_store(path)
    sqlite3.connect(path).execute("SELECT 1").connection.close()  # what any reader does
    with Store.open_existing(path) as reader:
        assert reader.counts()["done"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [STORE_NAME]
    with Store(path) as writer:  # the next grid writes in WAL mode again
        assert writer._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (tmp_path / f"{STORE_NAME}-wal").exists()  # the control: a WAL store is more than one file


def test_a_store_with_claims_in_flight_stays_in_wal(store: Store) -> None:
    cfg = configs(1)[0]
    store.enqueue([cfg], grid="g")
    store.claim(cfg.run_id, "some-other-host:1:abcd1234")  # another runner is still training it
    assert not store.make_publishable()
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_reader_opens_read_only_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    finished_store(path)
    before = path.read_bytes()
    with Store.open_existing(path) as reader:
        assert reader.counts()["done"] == 6
        with pytest.raises(UserError, match="is read-only; copy it somewhere writable"):
            reader.enqueue(configs(7), grid="g")
    assert path.read_bytes() == before


def store_files(folder: Path) -> dict[str, bytes]:
    """The store and whatever SQLite keeps beside it (-wal, -shm, -journal), by name, with their bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.startswith(STORE_NAME)}


KILLED_WRITER = """
import os, sys
from ablations.store.sqlite import Store, new_owner
from ablations.config import TrainConfig
store = Store(sys.argv[1])
cfg = TrainConfig(dataset="synthetic", seed=99, epochs=1)
store.enqueue([cfg], grid="g")
owner = new_owner()
store.claim(cfg.run_id, owner)
store.finish(cfg.run_id, owner, {"status": "done", "epochs": [{"epoch": 0, "test_acc": 0.5}]}, {})
os.kill(os.getpid(), 9)  # no close: the run lives in the -wal file only
"""


@pytest.mark.parametrize("left", ["closed by Store() from Python", "a killed writer", "a killed writer, -shm lost"])
def test_a_reader_of_a_store_left_in_wal_mode_reads_it_as_it_is_and_writes_nothing(tmp_path: Path, left: str) -> None:
    path = tmp_path / STORE_NAME
    with Store(path) as s:
        s.enqueue(configs(3), grid="g")
    expected = 3
    if left.startswith("a killed writer"):
        proc = python(KILLED_WRITER, str(path))
        proc.communicate(timeout=60)
        assert proc.returncode == -9
        expected += 1
        if left.endswith("lost"):
            (tmp_path / f"{STORE_NAME}-shm").unlink()
    before = store_files(tmp_path)
    control = tmp_path / "control"  # the control, on a copy: a plain reader changes what lies beside the store
    control.mkdir()
    for name, data in before.items():
        (control / name).write_bytes(data)
    plain = sqlite3.connect((control / STORE_NAME).as_uri() + "?mode=ro", uri=True)
    assert plain.execute("SELECT count(*) FROM runs").fetchone()[0] == expected
    plain.close()
    assert store_files(control) != before

    with Store.open_existing(path) as reader:
        assert len(reader.runs()) == expected and reader.counts()["done"] == expected - 3
    summary = cli("summary", "--results", str(tmp_path))
    assert summary.returncode == 0 and f"total     {expected}" in summary.stdout, summary.stderr
    assert store_files(tmp_path) == before  # the same names, the same bytes


def test_a_reader_sees_what_a_live_writer_commits_and_writes_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / STORE_NAME
    with Store(path) as writer:
        writer.enqueue(configs(1), grid="g")
        names = sorted(store_files(tmp_path))
        with Store.open_existing(path) as reader:
            writer.enqueue(configs(2), grid="g")
            assert len(reader.runs()) == 2
        assert sorted(store_files(tmp_path)) == names


def corrupt_back_half(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(len(data) // page // 2, len(data) // page):
        data[i * page + 8: (i + 1) * page] = bytes([0xA5]) * (page - 8)
    path.write_bytes(bytes(data))


def test_damaged_pages_are_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / STORE_NAME
    finished_store(path)
    corrupt_back_half(path)
    with pytest.raises(UserError) as err:  # opening reads every page
        Store.open_existing(path)
    message = str(err.value)
    assert message.startswith(f"{path} is damaged (") and "backup" in message and "\n" not in message
    # Past the opening check too, a query that meets a bad page says the same, not sqlite3.DatabaseError.
    monkeypatch.setattr(Store, "check_intact", lambda self: None)
    with Store.open_existing(path) as reader, pytest.raises(UserError, match=f"{path} is damaged"):
        reader.runs()


def test_cli_summary_of_a_damaged_store_exits_2_with_one_line(tmp_path: Path) -> None:
    finished_store(tmp_path / STORE_NAME)
    corrupt_back_half(tmp_path / STORE_NAME)
    proc = cli("summary", "--results", str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / STORE_NAME} is damaged")
