"""Memory over an epoch: the bytes in use at the start of every train step stay flat.

A step that left something behind (a loss kept with its graph, a metric appended per step, a
cache keyed by batch) would show as growth from one step to the next long before it runs a GPU
out of memory. On CUDA the figure is the caching allocator's count of live bytes; on CPU it is
glibc's count of bytes malloc has handed out, which is where torch's CPU tensors live.
"""

from __future__ import annotations

import ctypes
import dataclasses

import torch
from torch import nn

from ablations.augment import build_policy
from ablations.config import TrainConfig
from ablations.models import build_model
from ablations.schedules import schedule_for
from ablations.trainer import autocast_for, make_optimizer, train_one_epoch

# momentum > 0 so the optimizer's state is part of the steady state too (created on step 1)
CONFIG = TrainConfig(dataset="synthetic", augment="seed", batch_size=64, momentum=0.9, seed=0)
# Allowed growth over the 14 settled steps. Bookkeeping moves the figure by ~20 KB; the smallest
# feature map of this model at 28 px is 262 KB, so keeping any one per step passes 3 MB.
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
    """Bytes in use at the start of each step of one epoch; `keep` collects one feature map
    per step (1.4 MB at 28 px), the kind of leak the measurement must see."""
    cfg = dataclasses.replace(CONFIG, device=device.type)
    policy = build_policy(cfg.augment, native_size=data.native_size, out_size=data.native_size, channels=data.channels)
    model = build_model("seed_resnet_adaptive", in_channels=data.channels, num_classes=data.num_classes,
                        image_size=data.native_size).to(device=device, memory_format=torch.channels_last)
    samples: list[int] = []
    model.register_forward_pre_hook(lambda *_: samples.append(bytes_in_use(device)))
    if keep is not None:
        model.block2.register_forward_hook(lambda _module, _inputs, features: keep.append(features))
    steps = len(data.train_labels) // cfg.batch_size
    train_one_epoch(
        model, make_optimizer(model, cfg, device), nn.CrossEntropyLoss(), data, policy, batch_size=cfg.batch_size,
        lr_at=schedule_for(cfg, steps), first_step=0, generator=torch.Generator(device=device).manual_seed(0),
        autocast=autocast_for(cfg, device), memory_format=torch.channels_last,
    )
    assert len(samples) == steps
    return samples


def test_bytes_in_use_stay_flat_over_an_epoch(synthetic, device):
    samples = step_start_bytes(synthetic, device)
    settled = samples[2:]  # step 1 creates the gradients, momentum buffers and kernel caches that persist
    assert len(settled) >= 10
    assert max(settled) - settled[0] < TOLERANCE_BYTES, [s - settled[0] for s in settled]


def test_the_measurement_sees_a_feature_map_kept_per_step(synthetic, device):
    kept: list[torch.Tensor] = []
    samples = step_start_bytes(synthetic, device, keep=kept)
    settled = samples[2:]
    assert settled[-1] - settled[0] > (len(settled) - 1) * 1_000_000
    assert len(kept) == len(samples)


def test_cpu_figure_counts_a_new_tensor():
    before = bytes_in_use(torch.device("cpu"))
    block = torch.empty(8_000_000, dtype=torch.uint8)
    assert bytes_in_use(torch.device("cpu")) - before >= block.numel()
