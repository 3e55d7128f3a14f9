"""run_one(cfg) -> RunResult: the one way a run is executed, by `ablations train`, by a grid's workers
(here or on Ray) and by the API.

It trains the run, records where its numbers came from (commit, versions, device, precision,
parameter count, split sizes) and turns a crash or bad input into a failed result.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable

from ablations.config import Status, TrainConfig
from ablations.data.dataset import TensorDataset, load_dataset
from ablations.errors import UserError
from ablations.run.devices import resolve_device
from ablations.run.loop import train
from ablations.run.provenance import provenance
from ablations.run.result import RunResult


def run_one(cfg: TrainConfig, *, on_epoch: Callable[[dict], None] | None = None,
            data: TensorDataset | None = None) -> RunResult:
    """Train `cfg` (on `data`, else its dataset, read once per process) and return its result with
    provenance; `on_epoch` gets each epoch's metrics as it ends. Nothing raises but Ctrl-C: a crash
    or bad input is a failed result (`bad_input` says which; the train command turns that into its
    one-line error, a grid stores it and goes on)."""
    device, split_sizes = None, None
    try:
        device = resolve_device(cfg.device)
        data = data if data is not None else cached_dataset(*data_key(cfg), str(device))
        split_sizes = {split: len(data.split(split)[1]) for split in ("train", "val", "test")}
        result = train(cfg, data, on_epoch=on_epoch)
    except Exception as err:
        bad_input = isinstance(err, UserError)  # its message is already the one line a user needs
        result = RunResult(status=Status.FAILED, error=str(err) if bad_input else one_line(err), bad_input=bad_input)
    # where it ran: the device it resolved, or this machine's CPU if it could not resolve one
    result.provenance = provenance(device or "cpu", result.precision or None, result.param_count, split_sizes)
    return result


def one_line(err: BaseException) -> str:
    """The exception's type, text and the line that raised it."""
    last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (at {os.path.basename(last.filename)}:{last.lineno})" if last else ""
    return f"{type(err).__name__}: {err}{where}"


def data_key(cfg: TrainConfig) -> tuple:
    """The settings that decide a run's dataset tensors."""
    return cfg.dataset, cfg.data_root, cfg.train_subset, cfg.val_subset, cfg.test_subset, cfg.train_subset_seed


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, data_root: str | None, train_subset: int | None, val_subset: int | None,
                   test_subset: int | None, subset_seed: int | None, device: str) -> TensorDataset:
    """Runs of one grid share their dataset: read it once per process, not once per run."""
    return load_dataset(name, data_root=data_root, train_subset=train_subset, val_subset=val_subset,
                        test_subset=test_subset, subset_seed=subset_seed, device=device)
