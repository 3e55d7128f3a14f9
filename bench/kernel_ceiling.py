"""The utilization a train step could reach on this device's kernels, measured, not assumed.

A step's FLOPs are all in its matrix ops (convolutions forward and backward, matmuls). Record
those ops from one real step, re-run each alone on fresh tensors of the same shapes, strides and
dtypes, and add up their times: that sum is what the step would take if everything else in it
(normalization, activations, pooling, casts, the optimizer) were free, a floor under the step's
time up to timing noise (each kernel runs with its inputs in cache; where a step is nearly all
matrix ops, small batches of small images, the two are within noise of each other). The floor's share of the step's time is the most the step
can gain without faster kernels, so the step's utilization over that share is the ceiling no
change outside the kernel library can pass.

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

from bench.measure import synchronize

aten = torch.ops.aten
# The ops torch.utils.flop_counter counts for a convolutional network: what the FLOPs are made of.
MATRIX_OPS = frozenset({
    aten.convolution.default, aten.convolution_backward.default,
    aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
})


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
        tensor = torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device=self.device)
        return tensor.normal_() if tensor.is_floating_point() else tensor.zero_()


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
        if func in MATRIX_OPS:
            specs = tree_map(lambda a: TensorSpec.of(a) if isinstance(a, torch.Tensor) else a, (args, kwargs))
            self.ops.append(MatrixOp(func, *specs))
        return func(*args, **kwargs)


def record_matrix_ops(step: Callable[[], object]) -> list[MatrixOp]:
    """The matrix ops one call of `step` runs, in order (the call itself runs as usual)."""
    recorder = _Recorder()
    with recorder:
        step()
    return recorder.ops


def op_seconds(op: MatrixOp, device: torch.device) -> float:
    """Seconds of one call of `op` alone, on fresh tensors (made untimed)."""
    args, kwargs = op.materialized()
    synchronize(device)
    start = time.perf_counter()
    op.op(*args, **kwargs)
    synchronize(device)
    return time.perf_counter() - start


def kernel_floor_seconds(ops: list[MatrixOp], device: torch.device) -> float:
    """Seconds the step's matrix ops take when each runs alone: a floor under the step's time."""
    return sum(op_seconds(op, device) for op in ops)


def kernel_share(step: Callable[[], object], ops: list[MatrixOp], device: torch.device, *, rounds: int = 5,
                 steps_per_round: int = 3) -> float:
    """Median over `rounds` of (the ops' summed time alone) / (one step's median time), the two
    measured back to back in each round. One untimed pass over the ops first: oneDNN creates a
    primitive the first time it meets a shape, which the step has done already."""
    kernel_floor_seconds(ops, device)
    ratios = []
    for _ in range(rounds):
        step_times = []
        for _ in range(steps_per_round):
            start = time.perf_counter()
            step()
            synchronize(device)
            step_times.append(time.perf_counter() - start)
        ratios.append(kernel_floor_seconds(ops, device) / statistics.median(step_times))
    return statistics.median(ratios)
