"""The utilization a train step could reach on this device's kernels, measured, not assumed.

A step's FLOPs are all in its matrix ops (convolutions forward and backward, matmuls). Record
those ops from one real step and re-run them alone, on tensors of the same shapes, strides and
dtypes, back to back: their time is what the step would take if everything else in it
(normalization, activations, pooling, casts, the optimizer) were free, a floor under the step's
time up to timing noise (the kernels find their inputs in cache; where a step is nearly all
matrix ops, small batches of small images, the two are within noise of each other). The floor's
share of the step's time is the most the step can gain without faster kernels, so the step's
utilization over that share is the ceiling no change outside the kernel library can pass. That
ratio assumes the share measured here holds for the benchmark's own timing of the step: on a
shared CPU whose neighbours slow its matrix engines more than its memory, it holds to a few points.

The share is measured in rounds, the step and its kernels back to back in each, and the median
round is kept: a shared CPU's matrix throughput drifts by 2x within minutes (bench.peaks), and a
floor timed a minute after the step could land on either side of it. Timed together, the drift
moves both terms of each round's ratio.

The ops are recorded below autocast and autograd (a TorchDispatchMode), so they are the kernels
the device really ran: bf16 convolutions under bf16 autocast, and the backward pass's
`convolution_backward` with only the gradients it computed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from ablations.run.devices import synchronize

aten = torch.ops.aten
# The ops torch.utils.flop_counter counts for a convolutional network, in any overload (.default,
# .out): what the FLOPs are made of.
MATRIX_OPS = frozenset({aten.convolution, aten.convolution_backward, aten.mm, aten.addmm, aten.bmm, aten.baddbmm})


@dataclass(frozen=True)
class TensorSpec:
    """What a kernel's speed depends on: shape, strides (memory format), dtype and device."""
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, tensor: torch.Tensor) -> TensorSpec:
        return cls(tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype, tensor.device)

    def make(self) -> torch.Tensor:
        """A tensor with these strides over dense storage, so that an expanded (stride 0) input is
        filled once per stored element rather than written through overlapping views."""
        extent = 1 + sum((size - 1) * stride for size, stride in zip(self.shape, self.stride, strict=True))
        storage = torch.empty(extent if all(self.shape) else 0, dtype=self.dtype, device=self.device)
        storage.normal_() if storage.is_floating_point() else storage.zero_()
        return storage.as_strided(self.shape, self.stride)


@dataclass(frozen=True)
class MatrixOp:
    op: Any  # an aten OpOverload
    args: tuple
    kwargs: dict

    def materialized(self) -> tuple[tuple, dict]:
        return tree_map(lambda a: a.make() if isinstance(a, TensorSpec) else a, (self.args, self.kwargs))


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[MatrixOp] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in MATRIX_OPS:
            specs = tree_map(lambda a: TensorSpec.of(a) if isinstance(a, torch.Tensor) else a, (args, kwargs))
            self.ops.append(MatrixOp(func, *specs))
        return func(*args, **kwargs)


def record_matrix_ops(step: Callable[[], object]) -> list[MatrixOp]:
    """The matrix ops one call of `step` runs, in order (the call itself runs as usual)."""
    recorder = _Recorder()
    with recorder:
        step()
    return recorder.ops


class Replay:
    """The recorded ops with their input tensors made once, ready to run again as the step ran
    them: back to back, one synchronize at the end, with no allocation between ops but their
    outputs (as in the step)."""

    def __init__(self, ops: list[MatrixOp], device: torch.device) -> None:
        self.device = device
        self.calls = [(op.op, *op.materialized()) for op in ops]
        self.run()  # oneDNN creates a primitive the first time it meets a shape: untimed

    def run(self) -> float:
        """Seconds of one pass over every op."""
        synchronize(self.device)
        start = time.perf_counter()
        for op, args, kwargs in self.calls:
            op(*args, **kwargs)
        synchronize(self.device)
        return time.perf_counter() - start

    def op_seconds(self, index: int, *, repeats: int = 5) -> float:
        """Median seconds of op `index` over `repeats` back-to-back calls (one synchronize each)."""
        op, args, kwargs = self.calls[index]
        times = []
        for _ in range(repeats):
            synchronize(self.device)
            start = time.perf_counter()
            op(*args, **kwargs)
            synchronize(self.device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def step_seconds(step: Callable[[], object], device: torch.device, *, steps: int) -> float:
    """Seconds per step over `steps` back-to-back steps and one synchronize, as an epoch runs them."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def kernel_share(step: Callable[[], object], ops: list[MatrixOp], device: torch.device, *, rounds: int = 5,
                 steps_per_round: int = 3) -> float:
    """Median over `rounds` of (one pass over the ops alone) / (one step), measured back to back in
    each round."""
    replay = Replay(ops, device)
    ratios = [replay.run() / step_seconds(step, device, steps=steps_per_round) for _ in range(rounds)]
    return statistics.median(ratios)
