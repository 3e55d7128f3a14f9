"""RunResult: what one run returns, whoever ran it (`ablations train`, a grid's worker, the API)."""

from __future__ import annotations

import os
import traceback
from dataclasses import asdict, dataclass, field


@dataclass
class RunResult:
    status: str  # Status.DONE or Status.DIVERGED
    epochs: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    train_images_per_s: float = 0.0
    diverged_epoch: int | None = None
    peak_memory_bytes: int | None = None
    device_name: str = ""
    precision: str = ""  # as resolved on this device: fp32 or bf16
    param_count: int | None = None  # of the model trained
    error: str | None = None  # a failed run's exception, in one line
    bad_input: bool = False  # failed on bad input (a UserError: a missing dataset, an input size too small)
    provenance: dict | None = None  # where the numbers came from (ablations.run.provenance), set by run_one
    resumed_at_epoch: int | None = None  # the first epoch trained after resuming from a checkpoint
    checkpoint_commit: str | None = None  # the code that trained the epochs before it

    def _last(self, key: str) -> float | None:
        values = [e[key] for e in self.epochs if e.get(key) is not None]
        return values[-1] if values else None

    @property
    def final_test_acc(self) -> float | None:
        return self._last("test_acc")

    @property
    def final_val_acc(self) -> float | None:
        return self._last("val_acc")

    @property
    def final_train_acc(self) -> float | None:
        return self._last("train_acc")

    @property
    def best_val_epoch(self) -> int | None:
        """The epoch with the highest validation accuracy (the first, on a tie)."""
        scored = [e for e in self.epochs if e.get("val_acc") is not None]
        return max(scored, key=lambda e: (e["val_acc"], -e["epoch"]))["epoch"] if scored else None

    @property
    def best_val_acc(self) -> float | None:
        best = self.best_val_epoch
        return None if best is None else self.epochs[best - 1]["val_acc"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(
            final_test_acc=self.final_test_acc,
            final_val_acc=self.final_val_acc,
            final_train_acc=self.final_train_acc,
            best_val_acc=self.best_val_acc,
            best_val_epoch=self.best_val_epoch,
            final_test_loss=self._last("test_loss"),
            final_val_loss=self._last("val_loss"),
            final_train_loss=self._last("train_loss"),
        )
        return out


def one_line(err: BaseException) -> str:
    """A failed result's error: the exception's type, text and the line that raised it."""
    last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (at {os.path.basename(last.filename)}:{last.lineno})" if last else ""
    return f"{type(err).__name__}: {err}{where}"
