"""The claims a runner holds, kept alive by a heartbeat thread that a busy or full disk cannot kill.

A claim is (owner, attempt): the store gives a run to one of them at a time, and a claim whose
heartbeat is older than STALE_AFTER_S may be taken over by another runner. So a runner must
never train past that point without renewing:

- a renewal that fails for a moment ("database is locked" behind another connection's long
  transaction, "database or disk is full") is retried with backoff, and logged once;
- a claim not renewed for GIVE_UP_AFTER_S is given up: its run is stopped and handed back,
  before any other runner may take it;
- a claim found taken over is lost at once, and its run is stopped too.

A run is stopped through its stop file (the trainer looks for it after every epoch, in this
process or a worker process on this machine) and, for Ray, by cancelling its task. The store
also refuses the result of a claim that is gone (`Store.finish` checks owner and attempt in the
write's own transaction), so a run that finishes before it notices is dropped, never stored.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ablations.errors import UserError
from ablations.store.sqlite import Store

HEARTBEAT_EVERY_S = 5.0
STALE_AFTER_S = 60.0  # twelve missed heartbeats: the claim's process is gone
# One heartbeat period before a taker may claim it: time for the run to see its stop file.
GIVE_UP_AFTER_S = STALE_AFTER_S - HEARTBEAT_EVERY_S
# Each renewal waits this long for the write lock, then retries: a lock held for minutes cannot
# block the thread past the moment to give up.
RENEW_WAIT_S = 1.0
FIRST_RETRY_S = 0.5  # doubled after each failed renewal, up to HEARTBEAT_EVERY_S


@dataclass
class Claim:
    run_id: str
    attempt: int
    stop_file: Path  # created when the run must stop
    renewed: float  # time.monotonic() just before the last renewal that held (or the claim itself)
    lost: str | None = None  # why this runner no longer holds the run


class Claims:
    """This runner's claims, renewed by a thread with its own connection (connections are per thread).

    Use as a context manager around the driver loop; `warn` prints one line (from either thread)."""

    def __init__(self, path: Path, owner: str, warn: Callable[[str], None]) -> None:
        self.path, self.owner, self.warn = path, owner, warn
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="store-heartbeat")
        # Made only when a run must stop, so a grid killed with SIGKILL leaves nothing behind in the usual case.
        self._stop_dir = Path(tempfile.gettempdir()) / f"ablations-stop-{owner.replace(':', '-')}"

    def __enter__(self) -> Claims:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()  # its connection closes with it: the grid may then switch the journal mode
        shutil.rmtree(self._stop_dir, ignore_errors=True)

    # ---- the driver's side -------------------------------------------------------------
    def hold(self, run_id: str, attempt: int) -> Claim:
        claim = Claim(run_id, attempt, self._stop_dir / f"{run_id}-{attempt}", time.monotonic())
        # A claim just taken has not been asked to stop: a file left by a runner killed before its cleanup
        # (same owner name, run and attempt) must not stop it.
        claim.stop_file.unlink(missing_ok=True)
        with self._lock:
            self._held[run_id] = claim
        return claim

    def get(self, run_id: str) -> Claim:
        with self._lock:
            return self._held[run_id]

    def pop(self, run_id: str) -> Claim:
        with self._lock:
            return self._held.pop(run_id)

    def held(self) -> list[Claim]:
        with self._lock:
            return list(self._held.values())

    def lose(self, claim: Claim, why: str) -> None:
        """This runner no longer holds the run: stop it (the first reason stays)."""
        if claim.lost is None:
            claim.lost = why
            with contextlib.suppress(OSError):  # a full disk: the run trains on, its result is dropped
                claim.stop_file.parent.mkdir(exist_ok=True)
                claim.stop_file.touch()

    # ---- the heartbeat thread ----------------------------------------------------------
    def _run(self) -> None:
        store: Store | None = None
        delay, failing = HEARTBEAT_EVERY_S, False
        try:
            while not self._stopped.wait(delay):
                try:
                    store = store or Store(self.path, busy_timeout_s=RENEW_WAIT_S)
                    self._renew(store)
                except (sqlite3.OperationalError, UserError) as err:  # locked, or disk full: retried
                    if not failing:
                        self.warn(f"warning: cannot renew this runner's claims in {self.path} ({err}); retrying, "
                                  f"and stopping a run whose claim is not renewed within {GIVE_UP_AFTER_S:g} s")
                    delay = min(2 * delay, HEARTBEAT_EVERY_S) if failing else FIRST_RETRY_S
                    failing = True
                else:
                    failing, delay = False, HEARTBEAT_EVERY_S
                self._give_up_overdue()
        finally:
            if store is not None:
                store.close()

    def _renew(self, store: Store) -> None:
        for claim in self.held():
            if claim.lost is not None:
                continue
            started = time.monotonic()
            if store.heartbeat(claim.run_id, self.owner, claim.attempt):
                claim.renewed = started
            else:
                self.lose(claim, "another runner took its claim over")

    def _give_up_overdue(self) -> None:
        now = time.monotonic()
        for claim in self.held():
            if claim.lost is None and now - claim.renewed > GIVE_UP_AFTER_S:
                self.lose(claim, f"its claim could not be renewed for {GIVE_UP_AFTER_S:g} s")
