"""The benchmark device, the precisions it is measured in, and the one way a suite sets up a run.

Every benchmark that trains or evaluates a model builds it with `ablations.run.build.build_run`
(here, through `bench_run`), so the step it times is the step the grid runs: the same policy,
model, memory format, optimizer, resolved precision and autocast.
"""

from __future__ import annotations

import os

import torch

from ablations.config import TrainConfig
from ablations.data.dataset import TensorDataset
from ablations.run.build import Run, build_run
from ablations.run.devices import FAST_BF16_CAPABILITIES, cpu_capability, resolve_device

# The parameter grid depends on the device (bf16 where it is fast, batch 1024 on CUDA), and
# parametrization happens at collection, so the device is resolved once, at import.
BENCH_DEVICE = resolve_device(os.environ.get("ABLATIONS_BENCH_DEVICE", "auto"))
ON_CUDA = BENCH_DEVICE.type == "cuda"
# What the CPU runs bf16 matrix math on ("AMX-BF16", "AVX512-BF16", else an ISA level such as "AVX2").
CPU_CAPABILITY = cpu_capability()
# fp32 always; bf16 autocast where the hardware runs it natively. On an AVX2-only CPU bf16 is
# emulated and slower than fp32 (measured on an EPYC), so nobody trains with it there.
BF16_FAST = ON_CUDA or (BENCH_DEVICE.type == "cpu" and CPU_CAPABILITY in FAST_BF16_CAPABILITIES)
PRECISIONS = ("fp32", "bf16") if BF16_FAST else ("fp32",)
MEMORY_FORMATS = ("contiguous", "channels_last")
# The dtype whose peak a precision is held against: bf16 autocast runs convolutions and matmuls in bf16.
PEAK_DTYPE = {"fp32": "float32", "bf16": "bfloat16"}


def bench_run(data: TensorDataset, *, model: str, image_size: int, batch_size: int, precision: str = "auto",
              memory_format: str = "channels_last", augment: str = "none", **overrides) -> Run:
    """`build_run` on the benchmark device; `precision` "auto" resolves as the grid resolves it."""
    cfg = TrainConfig(
        dataset=data.name, model=model, image_size=image_size, batch_size=batch_size, precision=precision,
        channels_last=memory_format == "channels_last", augment=augment, device=str(BENCH_DEVICE), **overrides,
    )
    return build_run(cfg, data)


def memory_format_name(run: Run) -> str:
    return "channels_last" if run.memory_format == torch.channels_last else "contiguous"
