"""Timing, shared by every suite in bench/: one call of a benchmarked function processes `images` images.

Calls are timed on the host clock, so `measure` ends each call with a device synchronize: CUDA
work is asynchronous, and without it the clock would stop when the kernels are queued, not when
they are done. Warm-up calls run first, untimed: they pay once for what a long run pays once
(oneDNN primitive creation, cuDNN autotuning under `cudnn.benchmark`, allocator growth,
DataLoader worker start). Throughput comes from the median call, not the mean: on a shared CPU
one call that loses its cores to another process would otherwise move the figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ablations.run.devices import peak_memory_bytes, synchronize


@dataclass(frozen=True)
class Timing:
    images_per_s: float  # images per call / median seconds per call
    seconds: float  # median per call
    rounds: int
    num_threads: int  # torch intra-op threads the calls ran with
    peak_memory_bytes: int  # CUDA: max allocated during the benchmark; CPU: the process's peak RSS so far
    result: object = None  # what the last timed call returned, for the test's assertions


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (1 is what a DataLoader worker gets)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(
    benchmark,
    fn: Callable[[], object],
    *,
    device: torch.device,
    images: int,
    budget_s: float = 2.0,
    max_rounds: int = 30,
    warmup_calls: int = 1,
    warmup: Callable[[], object] | None = None,
    rounds: int | None = None,
    beside: Callable[[], None] | None = None,
) -> Timing:
    """Benchmark `fn` (one call = `images` images) and return its throughput.

    Rounds: `rounds` if given, else as many as fit in `budget_s` seconds judged by the last
    warm-up call (at least 1, at most `max_rounds`). `warmup` stands in for `fn` during warm-up
    where a call is too long to repeat (an epoch: one train step warms the same shapes); it
    then needs explicit `rounds`. With --benchmark-disable the body runs once and that single
    call is the one timed here. The thread count is read here, inside whatever `torch_threads`
    block the caller set, so the record says what the calls really ran with. `beside` runs before every
    timed call, untimed here (pytest-benchmark's setup): a variant the caller times on its own clock in
    the same rounds, so on a shared machine both see the same load.
    """
    assert warmup is None or rounds is not None, "a stand-in warm-up cannot size the rounds"

    def call() -> object:
        out = fn()
        synchronize(device)
        return out

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    threads = torch.get_num_threads()
    if benchmark.disabled:
        start = time.perf_counter()
        result = benchmark.pedantic(call, setup=beside)
        seconds, rounds = time.perf_counter() - start, 1
    else:
        last = math.inf
        for _ in range(warmup_calls):
            start = time.perf_counter()
            (warmup or fn)()
            synchronize(device)
            last = time.perf_counter() - start
        if rounds is None:
            rounds = max(1, min(max_rounds, int(budget_s / last)))
        result = benchmark.pedantic(call, rounds=rounds, iterations=1, setup=beside)
        seconds = benchmark.stats.stats.median
    return Timing(images / seconds, seconds, rounds, threads, peak_memory_bytes(device), result)
