"""Mid-run checkpoints: a long run that was stopped (Ctrl-C, a killed worker, a machine shut down) resumes
at its last saved epoch instead of epoch 1.

A checkpoint holds everything the rest of the run depends on: the weights and BatchNorm statistics,
the optimizer's state, the data-order and augmentation streams, and the epochs so far. Resumed from
it, a run trains the same batches with the same augmentations as one that never stopped, so on the
same machine its numbers are the same to the last bit (tests/test_checkpoint.py). It is keyed by the
run id (the hash of the run's settings): a file left by other settings is ignored, never loaded.

It is written after an epoch once SAVE_EVERY_S seconds have passed since the last one (a 10 MB model
saved every few seconds would cost more than it saves), to a temporary file renamed over the previous
one, so a kill in the middle of a write leaves the previous checkpoint whole. The run removes it once
its result exists.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads in the process that trains, not in a grid's driver that names the file
    from ablations.run.build import Run

SAVE_EVERY_S = 60.0  # at most this much training is lost when a run stops
FOLDER = "checkpoints"  # beside a grid's store: <results>/checkpoints/<run id>.pt


def checkpoint_path(results: str | os.PathLike, run_id: str) -> Path:
    """Where a grid keeps the checkpoint of run `run_id` while it trains."""
    return Path(results) / FOLDER / f"{run_id}.pt"


@dataclass
class Resumed:
    """What a run had done before it stopped, as its checkpoint recorded it."""

    epochs: list[dict]
    train_seconds: float
    wall_s: float
    commit: str | None  # of the code that trained those epochs


class Checkpoint:
    """The checkpoint file of one run; `save_every_s` 0 saves after every epoch."""

    def __init__(self, path: str | os.PathLike, save_every_s: float = SAVE_EVERY_S) -> None:
        self.path = Path(path)
        self.save_every_s = save_every_s
        self._last_save = time.monotonic()

    def load(self, run: Run) -> Resumed | None:
        """Restore `run` to the saved epoch; None (and `run` untouched) when there is no usable checkpoint."""
        if not self.path.exists():
            return None
        import torch

        try:
            # On the CPU first: a generator's state must be a CPU tensor; the weights are copied to the device.
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: train from the start rather than fail the run
            self._warn(f"cannot be read ({type(err).__name__}); the run starts from epoch 1")
            return None
        if state.get("run_id") != run.cfg.run_id:
            self._warn(f"belongs to run {state.get('run_id')}, not {run.cfg.run_id}; the run starts from epoch 1")
            return None
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.order.set_state(state["order"])
        run.augment.set_state(state["augment"])
        return Resumed(state["epochs"], state["train_seconds"], state["wall_s"], state["commit"])

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.save_every_s

    def save(self, run: Run, epochs: list[dict], train_seconds: float, wall_s: float) -> None:
        import torch

        from ablations.run.provenance import git_commit

        state = {
            "run_id": run.cfg.run_id,
            "commit": git_commit(),
            "epochs": epochs,
            "train_seconds": train_seconds,
            "wall_s": wall_s,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "order": run.order.get_state(),
            "augment": run.augment.get_state(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")  # one per writer
        torch.save(state, partial)
        os.replace(partial, self.path)
        self._last_save = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.path.parent.name == FOLDER:
            with contextlib.suppress(OSError):  # other runs' checkpoints are still in it
                self.path.parent.rmdir()  # a grid's folder goes with its last run's checkpoint

    def _warn(self, why: str) -> None:
        print(f"warning: checkpoint {self.path} {why}", file=sys.stderr, flush=True)
