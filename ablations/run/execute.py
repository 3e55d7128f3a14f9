"""run_one(cfg) -> RunResult: the one way a run is executed, by `ablations train`, by a grid's workers
(here or on Ray) and by the API; run_pack(cfgs) -> [RunResult], the same for a pack of runs trained as
one model (`ablations.run.packed_loop`), which run_one is with one run.

It trains the run, records where its numbers came from (commit, versions, device, precision,
parameter count, split sizes, pack size) and turns a crash or bad input into a failed result.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from ablations.config import Status, TrainConfig
from ablations.data.dataset import TensorDataset, load_dataset
from ablations.errors import UserError
from ablations.run.checkpoint import Checkpoint
from ablations.run.devices import resolve_device
from ablations.run.loop import train
from ablations.run.packed_loop import train_pack
from ablations.run.provenance import provenance
from ablations.run.result import RunResult, one_line


def run_one(cfg: TrainConfig, *, on_epoch: Callable[[dict], None] | None = None,
            data: TensorDataset | None = None) -> RunResult:
    """Train `cfg` (on `data`, else its dataset, read once per process) and return its result with
    provenance; `on_epoch` gets each epoch's metrics as it ends. Nothing raises but Ctrl-C: a crash
    or bad input is a failed result (`bad_input` says which; the train command turns that into its
    one-line error, a grid stores it and goes on)."""
    return run_pack([cfg], on_epoch=None if on_epoch is None else lambda k, metrics: on_epoch(metrics), data=data)[0]


def run_pack(cfgs: list[TrainConfig], *, on_epoch: Callable[[int, dict], None] | None = None,
             data: TensorDataset | None = None, checkpoint: str | os.PathLike | None = None) -> list[RunResult]:
    """`run_one` for runs that differ only in what a pack allows (`packed_loop.PACK_FREE`): one run trains
    unpacked, several as one model. One result per run, in order, each with its own provenance (which
    records the pack's size); `on_epoch(k, metrics)` gets run k's epochs. A member whose `on_epoch` raises
    ends alone, failed; a crash or bad input of the pack fails every member with the same error.
    `checkpoint`: a file a run trained alone resumes from and saves to (`ablations.run.checkpoint`); a pack
    trains from its first epoch."""
    device, split_sizes = None, None
    try:
        device = resolve_device(cfgs[0].device)
        data = data if data is not None else cached_dataset(*data_key(cfgs[0]), str(device))
        split_sizes = {split: len(data.split(split)[1]) for split in ("train", "val", "test")}
        if len(cfgs) == 1:
            results = [train(cfgs[0], data, on_epoch=None if on_epoch is None else functools.partial(on_epoch, 0),
                             checkpoint=Checkpoint(checkpoint) if checkpoint else None)]
        else:
            results = train_pack(cfgs, data, on_epoch=on_epoch)
    except Exception as err:
        bad_input = isinstance(err, UserError)  # its message is already the one line a user needs
        error = str(err) if bad_input else one_line(err)
        results = [RunResult(status=Status.FAILED, error=error, bad_input=bad_input) for _ in cfgs]
    for result in results:
        # where it ran: the device it resolved, or this machine's CPU if it could not resolve one
        result.provenance = provenance(device or "cpu", result.precision or None, result.param_count, split_sizes,
                                       pack_size=len(cfgs))
        if result.resumed_at_epoch:  # the epochs before it were trained by an earlier process, maybe other code
            result.provenance.update(resumed_at_epoch=result.resumed_at_epoch,
                                     checkpoint_commit=result.checkpoint_commit)
    return results


def data_key(cfg: TrainConfig) -> tuple:
    """The settings that decide a run's dataset tensors."""
    return cfg.dataset, cfg.data_root, cfg.train_subset, cfg.val_subset, cfg.test_subset, cfg.train_subset_seed


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, data_root: str | None, train_subset: int | None, val_subset: int | None,
                   test_subset: int | None, subset_seed: int | None, device: str) -> TensorDataset:
    """Runs of one grid share their dataset: read it once per process, not once per run."""
    return load_dataset(name, data_root=data_root, train_subset=train_subset, val_subset=val_subset,
                        test_subset=test_subset, subset_seed=subset_seed, device=device)
