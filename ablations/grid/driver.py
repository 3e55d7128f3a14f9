"""The driver loop: claim a run in the store, hand it to an executor, write what comes back.

Only this loop writes the store. A claim carries a heartbeat (a background thread refreshes
every claim in flight), so a run held by a process that died is taken over later; a finished
run is one transaction, so killing the driver at any moment loses no finished run.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from ablations.config import TrainConfig
from ablations.store.sqlite import Store, new_owner

HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = 60.0  # six missed heartbeats: the claim's process is gone


class Heartbeat(threading.Thread):
    """Refreshes the claims in flight from its own SQLite connection (connections are per thread)."""

    def __init__(self, path: Path, owner: str, held: dict[str, TrainConfig]) -> None:
        super().__init__(daemon=True, name="store-heartbeat")
        self.path, self.owner, self.held = path, owner, held
        self.stopped = threading.Event()

    def run(self) -> None:
        with Store(self.path) as store:
            while not self.stopped.wait(HEARTBEAT_EVERY_S):
                for run_id in list(self.held):
                    store.heartbeat(run_id, self.owner)

    def stop(self) -> None:
        self.stopped.set()


def execute(
    store: Store,
    pending: list[TrainConfig],
    executor,
    *,
    on_finish: Callable[[TrainConfig, dict], None] = lambda cfg, result: None,
    track=None,
) -> Counter:
    """Run every pending config once across all drivers sharing the store; count the outcomes.
    `track` (a tracking.TrackSpec) goes with each run to the process that trains it."""
    owner = new_owner()
    queue = deque(pending)
    in_flight: dict[Future, TrainConfig] = {}
    # Every claim not yet recorded, including one whose run the inline executor is training
    # inside submit() (its future does not exist yet): these get heartbeats and, on an
    # interruption, are handed back.
    held: dict[str, TrainConfig] = {}
    counts: Counter = Counter()
    heartbeat = Heartbeat(store.path, owner, held)
    heartbeat.start()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < executor.workers:
                cfg = queue.popleft()
                if not store.claim(cfg.run_id, owner, stale_after_s=STALE_AFTER_S):
                    counts["claimed elsewhere"] += 1  # another driver runs it, or finished it meanwhile
                    continue
                held[cfg.run_id] = cfg
                in_flight[executor.submit(cfg.to_dict(), track)] = cfg
            if not in_flight:
                break
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                cfg = in_flight.pop(future)
                result = _result_of(future)
                _record(store, cfg, owner, result)
                held.pop(cfg.run_id)
                counts[result["status"]] += 1
                on_finish(cfg, result)
    except BaseException:  # Ctrl-C, SIGTERM, or a bug: hand the unfinished claims back at once
        for run_id in held:
            store.release(run_id, owner)
        executor.shutdown(cancel=True)
        raise
    finally:
        heartbeat.stop()
        heartbeat.join()  # its connection closes with it: the grid may then switch the store's journal mode
    executor.shutdown()
    return counts


def _result_of(future: Future) -> dict:
    try:
        return future.result()
    except Exception as err:  # the worker itself died (killed, out of memory), after any retries
        return {"status": "failed", "error": f"worker died: {type(err).__name__}: {err}", "epochs": []}


def _record(store: Store, cfg: TrainConfig, owner: str, result: dict) -> None:
    store.finish(cfg.run_id, owner, result, result.pop("provenance", {}))
