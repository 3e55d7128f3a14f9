"""Memory over an epoch: the bytes in use at the start of every train step stay flat.

A step that left something behind (a loss kept with its graph, a metric appended per step, a
cache keyed by batch) would show as growth from one step to the next long before it runs a GPU
out of memory. On CUDA the figure is the caching allocator's count of live bytes; on CPU it is
glibc's count of bytes malloc has handed out, which is where torch's CPU tensors live.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math

import pytest
import torch

from ablations.config import TrainConfig
from ablations.run.build import build_run
from ablations.run.loop import train_one_epoch

# momentum > 0 so the optimizer's state is part of the steady state too (created on step 1).
# Precision auto: bf16 autocast on CUDA and AMX CPUs, fp32 elsewhere, as the grid trains.
CONFIG = TrainConfig(dataset="synthetic", augment="notebook", batch_size=64, momentum=0.9, seed=0)
# Allowed growth over the 14 settled steps. Bookkeeping moves the figure by ~20 KB; the smallest
# feature map of this model at 28 px is 131-262 KB (bf16-fp32), so keeping any one per step passes 1.8 MB.
TOLERANCE_BYTES = 400_000


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


def bytes_in_use(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device)
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd  # heap chunks in use + blocks mmapped for large tensors


def step_start_bytes(data, device: torch.device, *, keep: list | None = None) -> list[int]:
    """Bytes in use at the start of each step of one epoch of the trainer's own run; `keep`
    collects one feature map per step, the kind of leak the measurement must see."""
    run = build_run(dataclasses.replace(CONFIG, device=str(device)), data)
    samples: list[int] = []
    run.model.register_forward_pre_hook(lambda *_: samples.append(bytes_in_use(device)))
    if keep is not None:
        run.model.block2.register_forward_hook(lambda _module, _inputs, features: keep.append(features))
    train_one_epoch(run, 0)
    assert len(samples) == run.steps_per_epoch
    return samples


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@pytest.mark.capability
def test_bytes_in_use_stay_flat_over_an_epoch(synthetic, device):
    samples = step_start_bytes(synthetic, device)
    settled = samples[2:]  # step 1 creates the gradients, momentum buffers and kernel caches that persist
    assert len(settled) >= 10
    assert max(settled) - settled[0] < TOLERANCE_BYTES, [s - settled[0] for s in settled]


# A kept tensor holds at least its own bytes; allocator rounding only adds. Half of it leaves
# room for a figure that reuses freed blocks, and still lies far above the flat test's tolerance.
KEPT_FRACTION = 0.5


def test_the_measurement_sees_a_feature_map_kept_per_step(synthetic, device):
    kept: list[torch.Tensor] = []
    samples = step_start_bytes(synthetic, device, keep=kept)
    settled = samples[2:]
    assert len(kept) == len(samples)
    # the feature map as the run computed it: its shape and dtype follow the precision and device
    kept_bytes = tensor_bytes(kept[0])
    expected = (len(settled) - 1) * kept_bytes * KEPT_FRACTION
    assert expected > TOLERANCE_BYTES, "the leak must be larger than what the flat test allows"
    grown = settled[-1] - settled[0]
    assert grown >= math.ceil(expected), f"grew {grown:,} B over {len(settled) - 1} steps keeping {kept_bytes:,} B each"


def test_cpu_figure_counts_a_new_tensor():
    before = bytes_in_use(torch.device("cpu"))
    block = torch.empty(8_000_000, dtype=torch.uint8)
    assert bytes_in_use(torch.device("cpu")) - before >= block.numel()
