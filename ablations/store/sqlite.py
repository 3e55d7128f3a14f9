"""The run store: one SQLite file (`<results>/runs.sqlite`) that the grid fills and resumes from.

Each finished run is written in one transaction, so a process killed at any point (SIGKILL
included) leaves either the whole run or none of it. WAL lets the report read while a grid
writes, and claims take the write lock up front (BEGIN IMMEDIATE) so two grid processes
sharing a store never train the same run at once. When a grid ends the store goes back to a
rollback journal (`make_publishable`): one self-contained file that any reader, a read-only
mount included, opens without leaving -wal/-shm files beside it. This module's readers never write,
whatever mode the grid left the store in (`store_read`). Standard library only: the report reads
the store on machines without torch.

Every SQLite error that means "this file" (damaged, read-only, not a database) leaves the
store as a one-line UserError naming the file; contention ("database is locked") does not.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablations.config import FINAL_STATUSES, STATUSES, Status, TrainConfig
from ablations.errors import UserError, no_space, unknown_name
from ablations.store.read import reader_uri

STORE_NAME = "runs.sqlite"
# 2: validation metrics, the learning rate an epoch trained at, the grid a store holds.
SCHEMA_VERSION = 2
RESULT_FIELDS = (
    "error", "wall_s", "final_test_acc", "final_val_acc", "final_train_acc", "best_val_acc", "best_val_epoch",
    "final_test_loss", "final_val_loss", "final_train_loss", "train_images_per_s", "peak_memory_bytes",
    "diverged_epoch",
)
EPOCH_FIELDS = (
    "epoch", "lr", "lr_last", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds",
    "images_per_s",
)
# Columns each schema version added, so an older store is brought up to date when a grid writes it.
_ADDED_IN_2 = {
    "runs": ("final_val_acc REAL", "final_val_loss REAL", "best_val_acc REAL", "best_val_epoch INTEGER"),
    "epochs": ("lr_last REAL", "val_loss REAL", "val_acc REAL"),
}
# Long enough to outlast the other process's largest transaction (one finished run).
BUSY_TIMEOUT_S = 30.0
_HINT = "run `python -m ablations.run_grid` first"
_DAMAGED_HINT = "restore it from a backup, or give --results another folder to start afresh"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, cell_id TEXT NOT NULL, seed INTEGER NOT NULL, config TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '{Status.QUEUED}' CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
        error TEXT, owner TEXT, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL, finished_at REAL, wall_s REAL, final_test_acc REAL, final_val_acc REAL,
        final_train_acc REAL, best_val_acc REAL, best_val_epoch INTEGER, final_test_loss REAL, final_val_loss REAL,
        final_train_loss REAL, train_images_per_s REAL, peak_memory_bytes INTEGER, diverged_epoch INTEGER,
        provenance TEXT, grid TEXT)""",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",
    """CREATE TABLE IF NOT EXISTS epochs (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
        lr REAL, lr_last REAL, train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, test_loss REAL,
        test_acc REAL, seconds REAL, images_per_s REAL, PRIMARY KEY (run_id, epoch))""",
)


# The claim a writer names is still the one that holds the run: parameters run_id, owner, attempt, attempt
# (an attempt of None matches any attempt of that owner).
_HELD = f"run_id = ? AND owner = ? AND status = '{Status.RUNNING}' AND (? IS NULL OR attempts = ?)"


def new_owner() -> str:
    """A claim holder's name: the host and pid say who, the random part survives pid reuse."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_died_here(owner: str | None) -> bool:
    """True if `owner` (host:pid:token) names a process of this host that is gone."""
    parts = (owner or "").split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    return False


def user_error(path: Path, err: sqlite3.DatabaseError) -> UserError | None:
    """The one-line error for an SQLite error about the file itself; None for contention, which is not
    the user's to fix and must stay an error the caller can retry or see in full."""
    text = str(err)
    if "locked" in text or "busy" in text:
        return None
    if "readonly" in text or "read-only" in text:
        return UserError(f"{path} is read-only; copy it somewhere writable and point --results there")
    if "unable to open" in text:  # e.g. a store left in WAL mode (a killed grid) on a read-only disk
        return UserError(f"{path} cannot be opened ({text}); copy its folder somewhere writable and use that")
    if "database or disk is full" in text:  # SQLITE_FULL: the file system, not the file
        return no_space(path)
    if isinstance(err, sqlite3.OperationalError) and "disk i/o" not in text.lower():
        return None  # a bad statement: a bug here, shown with its traceback
    return UserError(f"{path} is damaged ({text}); {_DAMAGED_HINT}")


@contextmanager
def _as_user_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as err:
        translated = user_error(path, err)
        if translated is None:
            raise
        raise translated from None


def store_path(results: str | os.PathLike) -> Path:
    """The store file of a results folder."""
    return Path(results) / STORE_NAME


# A run has started once it was ever claimed: from then on the grid's [analysis] is fixed.
STARTED_SQL = "SELECT 1 FROM runs WHERE status != 'queued' OR attempts > 0 LIMIT 1"


class Store:
    """Queue, claims and results of an ablation grid; safe to share between processes.

    One connection per Store, guarded by a lock so a heartbeat thread can share it. Do not
    carry a Store across fork(): open a new one in the child.
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = BUSY_TIMEOUT_S, _create: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():  # a results folder given where its store file was meant
            self.path = store_path(self.path)
        if _create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise UserError(f"no run store at {self.path}; {_HINT}")
        self._lock = threading.RLock()
        created = _create and not self.path.exists()
        # A reader never writes, in the file or beside it, and reads a store on a read-only disk.
        uri, self._copy = (self.path.resolve().as_uri(), None) if _create else reader_uri(self.path)
        # Autocommit mode: every transaction is explicit. Any thread may call under self._lock.
        self._conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup(_create)
        except BaseException as err:
            self.close()
            if created:  # half a store (a full disk before its tables) would be refused as "not a run store"
                for suffix in ("", "-wal", "-shm", "-journal"):
                    self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            if isinstance(err, sqlite3.DatabaseError) and "file is not a database" in str(err):
                raise UserError(f"{self.path} is not a run store ({err}): restore it if it was one, "
                                f"or give --results another folder") from None
            if isinstance(err, sqlite3.DatabaseError) and (translated := user_error(self.path, err)):
                raise translated from None
            raise

    @classmethod
    def open_existing(cls, path: str | os.PathLike) -> Store:
        """Open a store the grid wrote; never creates one (the report and the CLI use this)."""
        return cls(path, _create=False)

    def _setup(self, create: bool) -> None:
        db = self._conn
        # synchronous FULL fsyncs each commit: a finished run costs minutes, the fsync milliseconds.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        if create:  # WAL is stored in the file; setting it on a file we only open would write to it
            db.execute("PRAGMA journal_mode = WAL")
        if create and self._version() is None:
            with self._write():
                # Checked again under the write lock: another process may have just created it.
                if self._version() is None:
                    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                        raise UserError(f"{self.path} is an SQLite file but not a run store; use another path")
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        version = self._version()
        if version is None:
            raise UserError(f"{self.path} is not a run store; {_HINT}")
        if version > SCHEMA_VERSION:
            raise UserError(f"{self.path} has store schema {version}, newer than this code's {SCHEMA_VERSION}")
        if create and version < SCHEMA_VERSION:
            self._upgrade()
        if not create:
            self.check_intact()

    def check_intact(self) -> None:
        """Read every page (quick_check): a store whose header is intact but whose pages are not
        would otherwise give a wrong summary, or fail half way through a report or a grid."""
        rows = [row[0] for row in self._conn.execute("PRAGMA quick_check(3)").fetchall()]
        if rows == ["ok"]:
            return
        # SQLite heads the list with "*** in database main ***" and may put several problems in a row.
        problems = [line for row in rows for line in row.splitlines() if not line.startswith("***")]
        raise UserError(f"{self.path} is damaged ({problems[0] if problems else rows[0]}); {_DAMAGED_HINT}")

    def _upgrade(self) -> None:
        """Add the columns of newer schemas; old rows keep NULL there (the report reads them as missing)."""
        with self._write() as db:
            if self._version() >= SCHEMA_VERSION:  # another process upgraded it meanwhile
                return
            for table, columns in _ADDED_IN_2.items():
                for column in columns:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _version(self) -> int | None:
        if not self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
            return None
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else None

    # ---- transactions ------------------------------------------------------------------
    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock, _as_user_errors(self.path):
            self._conn.execute(begin)
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _write(self) -> Any:  # takes the write lock at BEGIN: no deadlock upgrading a read lock
        return self._transaction("BEGIN IMMEDIATE")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, _as_user_errors(self.path):
            return self._conn.execute(sql, tuple(params)).fetchall()

    def make_publishable(self) -> bool:
        """Fold the WAL into the file and switch to a rollback journal, as a grid ends.

        A WAL store is two or three files, and any reader of it (sqlite3, a copy, a read-only
        mount) writes or needs -wal/-shm beside it; a rollback-journal store is one file that
        readers leave alone. The next grid switches back to WAL. Skipped (False) while another
        runner holds claims in it: that runner switches when it ends."""
        with self._lock:
            try:
                if self._conn.execute(f"SELECT 1 FROM runs WHERE status = '{Status.RUNNING}' LIMIT 1").fetchone():
                    return False
                return self._conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
            except sqlite3.DatabaseError:  # locked by another process now, or damaged: it stays WAL
                return False

    def close(self) -> None:
        with self._lock:
            self._conn.close()  # the last connection to close checkpoints and removes the WAL file
            if self._copy is not None:
                shutil.rmtree(self._copy, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the grid a store holds ---------------------------------------------------------
    def grid(self) -> dict[str, Any] | None:
        """The grid this store holds ({"name", "axes", "fixed", "seeds"}), None if none recorded."""
        row = self._query("SELECT value FROM meta WHERE key = 'grid'")
        return json.loads(row[0][0]) if row else None

    # ---- queue and claims --------------------------------------------------------------
    def enqueue(self, configs: Iterable[TrainConfig], grid: str | None = None,
                grid_spec: dict[str, Any] | None = None) -> int:
        """Add configs as queued runs; runs already present (any status) are left alone.

        `grid_spec` ({"name", "axes", "fixed", "seeds"}) is recorded on the first enqueue; a store
        holds one grid, so another grid (other name, axes or fixed settings) is refused. More
        seeds of the same grid are welcome: the recorded seeds grow."""
        rows = [(c.run_id, c.cell_id, c.seed, json.dumps(c.to_dict(), sort_keys=True), grid) for c in configs]
        with self._write() as db:
            if grid_spec is not None:
                self._record_grid(db, grid_spec)
            sql = "INSERT OR IGNORE INTO runs (run_id, cell_id, seed, config, grid) VALUES (?, ?, ?, ?, ?)"
            return db.executemany(sql, rows).rowcount  # ignored rows do not count

    def check_grid(self, grid_spec: dict[str, Any]) -> None:
        """Raise the one-line error `enqueue` would, without writing anything."""
        held = self.grid()
        started = held is not None and bool(self._query(STARTED_SQL, ()))
        self._merged_grid(held, grid_spec, started)

    def _record_grid(self, db: sqlite3.Connection, grid_spec: dict[str, Any]) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'grid'").fetchone()
        started = db.execute(STARTED_SQL).fetchone() is not None
        merged = self._merged_grid(json.loads(row[0]) if row else None, grid_spec, started)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('grid', ?)", (json.dumps(merged, sort_keys=True),))

    def _merged_grid(self, held: dict[str, Any] | None, new: dict[str, Any], started: bool) -> dict[str, Any]:
        new = json.loads(json.dumps(new))  # tuples as lists, as stored
        if held is None:
            return new
        same = all(held.get(k) == new.get(k) for k in ("name", "axes", "fixed"))
        if not same:
            raise UserError(
                f"{self.path.parent} holds grid {held.get('name')!r} with other settings; a store holds one grid: "
                f"give this one another --results folder"
            )
        merged = {**held, "seeds": sorted(set(held.get("seeds", [])) | set(new.get("seeds", [])))}
        if held.get("analysis") == new.get("analysis"):
            return merged
        # The analysis is pre-registered: it may change until a run starts, never after (a margin or scale
        # chosen after seeing runs would be chosen on them).
        if started:
            raise UserError(
                f"{self.path.parent} holds grid {held.get('name')!r} whose [analysis] was fixed when its first run "
                f"started ({json.dumps(held.get('analysis', 'none: the defaults'), sort_keys=True)}); restore it in "
                f"the grid file, or run the changed grid into another --results folder"
            )
        merged.pop("analysis", None)
        return {**merged, **({"analysis": new["analysis"]} if "analysis" in new else {})}

    def status_of(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Status per run id; ids not in the store are left out."""
        ids = list(run_ids)
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            out.update(self._query(f"SELECT run_id, status FROM runs WHERE run_id IN ({marks})", chunk))
        return out

    def claim(self, run_id: str, owner: str, stale_after_s: float = 120.0) -> int | None:
        """Take a run to train: queued or failed, or running under a claim whose heartbeat
        stopped (its process died). Done and diverged runs are never claimed again. Returns the
        claim's attempt number, which with `owner` names this claim alone; None if not taken."""
        with self._write() as db:
            now = time.time()  # read after the lock is held: waiting for it must not age the cutoff
            row = db.execute(f"SELECT owner FROM runs WHERE run_id = ? AND status = '{Status.RUNNING}'", (run_id,)).fetchone()
            # A claim of a process on this host that no longer exists is dead now, not in a minute:
            # a grid killed with SIGKILL and started again resumes its runs at once.
            dead_owner = row["owner"] if row is not None and _owner_died_here(row["owner"]) else None
            taken = db.execute(
                f"""UPDATE runs SET status = '{Status.RUNNING}', owner = ?, heartbeat = ?, started_at = ?,
                       attempts = attempts + 1
                   WHERE run_id = ? AND (status IN ('{Status.QUEUED}', '{Status.FAILED}')
                         OR (status = '{Status.RUNNING}' AND (heartbeat IS NULL OR heartbeat <= ? OR owner = ?)))""",
                (owner, now, now, run_id, now - stale_after_s, dead_owner),
            ).rowcount == 1
            return db.execute("SELECT attempts FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0] if taken else None

    def heartbeat(self, run_id: str, owner: str, attempt: int | None = None) -> bool:
        """Keep a claim alive; False means this claim is gone (another process took it over, or it
        was handed back): its run must stop, since its result would be dropped."""
        with self._write() as db:
            return db.execute(
                f"UPDATE runs SET heartbeat = ? WHERE {_HELD}", (time.time(), run_id, owner, attempt, attempt),
            ).rowcount == 1

    def finish(self, run_id: str, owner: str, result: dict[str, Any], provenance: dict[str, Any],
               attempt: int | None = None) -> bool:
        """Record a finished run and its epochs in one transaction, if this claim (owner, and attempt
        when given) still holds the run; checked in the same transaction, so a runner that lost its
        claim never writes over the runner that took it. False: nothing was written."""
        status = result.get("status")
        if status not in FINAL_STATUSES:
            raise ValueError(f"result status must be one of {FINAL_STATUSES}, got {status!r}")
        epochs = [tuple(_scalar(e.get(k)) for k in EPOCH_FIELDS) for e in result.get("epochs") or ()]
        values = [_scalar(result.get(k)) for k in RESULT_FIELDS]
        blob = json.dumps(provenance, sort_keys=True, default=str)
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise ValueError(f"run {run_id} is not in the store {self.path}; enqueue it first")
            sets = ", ".join(f"{k} = ?" for k in RESULT_FIELDS)
            if db.execute(
                f"""UPDATE runs SET status = ?, {sets}, provenance = ?, finished_at = ?, owner = NULL, heartbeat = NULL
                    WHERE {_HELD}""",
                (str(status), *values, blob, time.time(), run_id, owner, attempt, attempt),
            ).rowcount != 1:
                return False
            db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            db.executemany(
                f"INSERT INTO epochs (run_id, {', '.join(EPOCH_FIELDS)}) VALUES (?{', ?' * len(EPOCH_FIELDS)})",
                [(run_id, *e) for e in epochs],
            )
            return True

    def fail(self, run_id: str, owner: str, error: str, attempt: int | None = None) -> bool:
        """Mark a run failed; ignored (False) if this claim no longer holds it."""
        return self._drop_claim(run_id, owner, attempt, f"status = '{Status.FAILED}', error = ?, finished_at = ?",
                                (error, time.time()))

    def release(self, run_id: str, owner: str, attempt: int | None = None) -> bool:
        """Hand a claim back (Ctrl-C, a full disk, a claim that could not be renewed): the run is queued again."""
        return self._drop_claim(run_id, owner, attempt, f"status = '{Status.QUEUED}'", ())

    def _drop_claim(self, run_id: str, owner: str, attempt: int | None, sets: str, params: tuple[Any, ...]) -> bool:
        # Only the holder may: a process whose claim was taken over must not undo the takeover.
        with self._write() as db:
            return db.execute(
                f"UPDATE runs SET {sets}, owner = NULL, heartbeat = NULL WHERE {_HELD}",
                (*params, run_id, owner, attempt, attempt),
            ).rowcount == 1

    # ---- reading -----------------------------------------------------------------------
    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Run rows in enqueue order, with config and provenance decoded from JSON."""
        if status is not None and status not in STATUSES:
            raise unknown_name("status", status, STATUSES)
        where = "" if status is None else " WHERE status = ?"
        rows = self._query(f"SELECT * FROM runs{where} ORDER BY rowid", () if status is None else (status,))
        decode = ("config", "provenance")
        return [{k: json.loads(v) if k in decode and v is not None else v for k, v in dict(r).items()} for r in rows]

    def epochs(self, run_id: str | None = None) -> list[dict[str, Any]]:
        where = "" if run_id is None else " WHERE run_id = ?"
        rows = self._query(f"SELECT * FROM epochs{where} ORDER BY run_id, epoch", () if run_id is None else (run_id,))
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Runs per status, every status listed (0 if none)."""
        found = dict(self._query("SELECT status, count(*) FROM runs GROUP BY status"))
        return {s: found.get(s, 0) for s in STATUSES}

    def snapshot(self) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
        """The runs table's columns, every run and every epoch, read in one transaction: what an
        export writes describes one moment of a store that a grid may be writing."""
        with self._transaction("BEGIN"):
            columns = [r["name"] for r in self._query("PRAGMA table_info(runs)")]
            return columns, self.runs(), self.epochs()

def _scalar(value: Any) -> Any:
    """A value SQLite can bind; numpy and torch scalars arrive from the training loop.
    SQLite stores NaN (a diverged loss) as NULL."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or isinstance(value, (int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} value {value!r}")
