"""The driver loop: claim a run (or each run of a pack) in the store, hand it to an executor, write what
comes back, one run at a time.

Only this loop writes results. A heartbeat thread keeps every claim in flight alive
(`ablations.grid.claims`); a run whose claim is lost (taken over, or not renewable in time) is
stopped, handed back and its result dropped with one warning line, so each run is trained to
completion and stored by exactly one runner. A run trained alone on this machine saves a checkpoint
beside the store as it trains (`ablations.run.checkpoint`), so the runner that claims it next, after a
kill or a lost claim, resumes it at its last saved epoch. In a pack each run has its own claim (attempt and stop
file): a run whose claim is lost stops alone, and the pack's task is cancelled only when every run
of it is lost (on Ray, where stop files do not reach, a lost run trains on in its pack and its
result is dropped). A finished run is one transaction, so killing the driver at any moment loses
no finished run.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait

from ablations.config import TrainConfig
from ablations.grid.claims import HEARTBEAT_EVERY_S, STALE_AFTER_S, Claim, Claims
from ablations.run.checkpoint import checkpoint_path
from ablations.store.sqlite import Store, new_owner

HANDED_BACK = "handed back"  # a count: runs whose claim this runner lost, left to the next claimant


def warn_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def execute(
    store: Store,
    pending: list[list[TrainConfig]],
    executor,
    *,
    on_finish: Callable[[TrainConfig, dict], None] = lambda cfg, result: None,
    warn: Callable[[str], None] = warn_on_stderr,
    track=None,
) -> Counter:
    """Run every pending config once across all drivers sharing the store; count the outcomes. `pending`
    holds packs, runs trained together (`ablations.grid.packs`; one run each when unpacked); a pack trains
    the runs of it this driver could claim. `track` (a tracking.TrackSpec) goes with each run to the
    process that trains it."""
    owner = new_owner()
    queue = deque(pending)
    in_flight: dict[Future, list[TrainConfig]] = {}
    counts: Counter = Counter()
    # Every claim not yet recorded, including one whose run the inline executor is training inside
    # submit() (its future does not exist yet), is held here: renewed and, on an interruption, handed back.
    with Claims(store.path, owner, warn) as claims:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < executor.workers:
                    claimed: list[tuple[TrainConfig, Claim]] = []
                    for cfg in queue.popleft():
                        attempt = store.claim(cfg.run_id, owner, stale_after_s=STALE_AFTER_S)
                        if attempt is None:
                            counts["claimed elsewhere"] += 1  # another driver runs it, or finished it meanwhile
                        else:
                            claimed.append((cfg, claims.hold(cfg.run_id, attempt)))
                    if claimed:
                        future = executor.submit([cfg.to_dict() for cfg, _ in claimed], track,
                                                 [str(claim.stop_file) for _, claim in claimed],
                                                 checkpoint_for(store, [cfg for cfg, _ in claimed], executor))
                        in_flight[future] = [cfg for cfg, _ in claimed]
                if not in_flight:
                    break
                # Woken at least once a heartbeat, to stop the tasks of claims lost meanwhile.
                finished, _ = wait(list(in_flight), timeout=HEARTBEAT_EVERY_S, return_when=FIRST_COMPLETED)
                _stop_lost(claims, in_flight, executor)
                for future in finished:
                    pack = in_flight.pop(future)
                    for cfg, result in zip(pack, _results_of(future, len(pack)), strict=True):
                        outcome = _record(store, owner, claims.get(cfg.run_id), result, warn)
                        claims.pop(cfg.run_id)
                        counts[outcome] += 1
                        if outcome != HANDED_BACK:
                            on_finish(cfg, result)
        except BaseException:  # Ctrl-C, SIGTERM, a full disk, or a bug: hand the unfinished claims back at once
            for claim in claims.held():
                _hand_back(store, owner, claim)
            executor.shutdown(cancel=True)
            raise
    executor.shutdown()
    return counts


def checkpoint_for(store: Store, pack: list[TrainConfig], executor) -> str | None:
    """The checkpoint file of a run trained alone, beside the store, where the executor's runs reach it."""
    if len(pack) != 1 or not getattr(executor, "checkpoints", False):
        return None
    return str(checkpoint_path(store.path.parent, pack[0].run_id))


def _results_of(future: Future, runs: int) -> list[dict]:
    try:
        return future.result()
    except Exception as err:  # the worker itself died (killed, out of memory), after any retries
        return [{"status": "failed", "error": f"worker died: {type(err).__name__}: {err}", "epochs": []}
                for _ in range(runs)]


def _record(store: Store, owner: str, claim: Claim, result: dict, warn: Callable[[str], None]) -> str:
    """Store the result if this runner still holds the run (checked in the write's transaction);
    otherwise drop it with one warning line and hand the run back. Returns what to count."""
    provenance = result.pop("provenance", {})
    if claim.lost is None and store.finish(claim.run_id, owner, result, provenance, attempt=claim.attempt):
        return result["status"]
    why = claim.lost or "another runner took its claim over"
    _hand_back(store, owner, claim)
    warn(f"warning: run {claim.run_id} stopped: {why}; its result is dropped, the run is left to the runner "
         f"that claims it next")
    return HANDED_BACK


def _hand_back(store: Store, owner: str, claim: Claim) -> None:
    """Queue the run again if this claim still holds it; a store that cannot take the write now leaves
    the claim to go stale, and another runner (or the next grid here) takes it over."""
    with contextlib.suppress(Exception):  # the error that brought us here is the one to report
        store.release(claim.run_id, owner, attempt=claim.attempt)


def _stop_lost(claims: Claims, in_flight: dict[Future, list[TrainConfig]], executor) -> None:
    lost = {c.run_id for c in claims.held() if c.lost is not None}
    for future, pack in in_flight.items():
        # A lost run of a pack that trains on sees its stop file; the task goes once none of it is held.
        if all(cfg.run_id in lost for cfg in pack):
            executor.stop(future)  # Ray cancels the task; local runs see their stop file
