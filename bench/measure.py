"""Timing and the numbers derived from it, shared by every suite in bench/.

One call of a benchmarked function processes `images` images. Calls are timed on the host
clock, so `measure` ends each call with a device synchronize: CUDA work is asynchronous, and
without it the clock would stop when the kernels are queued, not when they are done. Warm-up
calls run first, untimed: they pay once for what a long run pays once (oneDNN primitive
creation, cuDNN autotuning under `cudnn.benchmark`, allocator growth, DataLoader worker start).

extra_info keys, read by the report (keep them): suite, variant, role, images_per_s, batch_size,
device, device_name, dtype, memory_format, peak_memory_bytes; for model work also
flops_per_image, achieved_flops_per_s, peak_flops_per_s, utilization. `Registry` adds the
within-group ratios speedup_vs_notebook, fraction_of_bare_step and data_pipeline_overhead.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ablations.models import build_model
from ablations.provenance import device_name, resolve_device
from ablations.trainer import peak_memory_bytes

# The parameter grid depends on the device (bf16 and batch 1024 on CUDA only), and
# parametrization happens at collection, so the device is resolved once, at import.
BENCH_DEVICE = resolve_device(os.environ.get("ABLATIONS_BENCH_DEVICE", "auto"))
ON_CUDA = BENCH_DEVICE.type == "cuda"

BASELINE, CANDIDATE = "baseline", "candidate"
BARE_STEP = "bare step"

# Dense peaks in FLOP/s (datasheet figures "with sparsity" halved), boost clock; first match on
# torch.cuda.get_device_name wins. "tfloat32" is what float32 convolutions get by default:
# cuDNN may use TF32 tensor cores unless torch.backends.cudnn.allow_tf32 is switched off.
GPU_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    # H100 PCIe datasheet: BF16 1,513 and TF32 756 TFLOPS with sparsity, FP32 51
    (r"H100.*PCIe", {"bfloat16": 756e12, "tfloat32": 378e12, "float32": 51e12}),
    # H100 SXM5 and H200 SXM datasheets (same compute): BF16 1,979 and TF32 989 with sparsity, FP32 67
    (r"H100|H200", {"bfloat16": 989e12, "tfloat32": 495e12, "float32": 67e12}),
    # A100 datasheet, SXM4 and PCIe alike: BF16 312, TF32 156, FP32 19.5
    (r"A100", {"bfloat16": 312e12, "tfloat32": 156e12, "float32": 19.5e12}),
    # L4 datasheet: BF16 242 and TF32 120 with sparsity, FP32 30.3
    (r"\bL4\b", {"bfloat16": 121e12, "tfloat32": 60e12, "float32": 30.3e12}),
    # A10 datasheet: BF16 250 and TF32 125 with sparsity, FP32 31.2 (not the A10G)
    (r"\bA10\b", {"bfloat16": 125e12, "tfloat32": 62.5e12, "float32": 31.2e12}),
    # Ada whitepaper, RTX 4090: BF16 with FP32 accumulate 165.2, TF32 82.6, FP32 82.6
    (r"RTX 4090", {"bfloat16": 165e12, "tfloat32": 82.6e12, "float32": 82.6e12}),
    # V100 SXM2 datasheet: FP32 15.7; no BF16 or TF32 tensor cores, so bf16 gets no peak
    (r"V100", {"float32": 15.7e12}),
)


@dataclass(frozen=True)
class Timing:
    images_per_s: float
    seconds: float  # mean per call
    rounds: int
    peak_memory_bytes: int  # CUDA: max allocated during the benchmark; CPU: the process's peak RSS so far
    result: object = None  # what the last timed call returned, for the test's assertions


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work; CPU work is already done when a call returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
) -> Timing:
    """Benchmark `fn` (one call = `images` images) and return its throughput.

    Rounds: `rounds` if given, else as many as fit in `budget_s` seconds judged by the last
    warm-up call (at least 1, at most `max_rounds`). `warmup` stands in for `fn` during warm-up
    where a call is too long to repeat (an epoch: one train step warms the same shapes); it
    then needs explicit `rounds`. With --benchmark-disable the body runs once and that single
    call is the one timed here.
    """
    assert warmup is None or rounds is not None, "a stand-in warm-up cannot size the rounds"

    def call() -> object:
        out = fn()
        synchronize(device)
        return out

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if benchmark.disabled:
        start = time.perf_counter()
        result = benchmark.pedantic(call)
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
        result = benchmark.pedantic(call, rounds=rounds, iterations=1)
        seconds = benchmark.stats.stats.mean
    return Timing(images / seconds, seconds, rounds, peak_memory_bytes(device), result)


def record(
    benchmark,
    registry: Registry,
    *,
    suite: str,
    variant: str,
    role: str,
    timing: Timing,
    batch_size: int,
    device: torch.device,
    dtype: str = "float32",
    memory_format: str = "contiguous",
    flops_per_image: float | None = None,
    peak_flops_per_s: float | None = None,
) -> dict:
    """Fill benchmark.extra_info with the report's keys and enter it in the group's ratios."""
    assert role in (BASELINE, CANDIDATE) and benchmark.group, "set benchmark.group before record()"
    info = benchmark.extra_info
    info.update(
        suite=suite, variant=variant, role=role, images_per_s=timing.images_per_s, batch_size=batch_size,
        device=str(device), device_name=device_name(device), dtype=dtype, memory_format=memory_format,
        peak_memory_bytes=timing.peak_memory_bytes, rounds=timing.rounds,
    )
    if flops_per_image is not None:
        achieved = flops_per_image * timing.images_per_s
        info.update(
            flops_per_image=flops_per_image, achieved_flops_per_s=achieved, peak_flops_per_s=peak_flops_per_s,
            utilization=achieved / peak_flops_per_s if peak_flops_per_s else None,
        )
    registry.add(benchmark.group, info)
    return info


class Registry:
    """Per benchmark group, the extra_info of every benchmark measured so far this session.

    Each `add` refreshes the ratios of the whole group (the dicts are pytest-benchmark's own,
    saved at session end), so a ratio appears once both of its terms were measured, whatever
    the order the tests ran in or which of them -k selected.
    """

    def __init__(self) -> None:
        self.groups: dict[str, list[dict]] = defaultdict(list)

    def add(self, group: str, info: dict) -> None:
        infos = self.groups[group]
        infos.append(info)
        baseline = next((i for i in infos if i["role"] == BASELINE), None)
        bare = next((i for i in infos if i["variant"] == BARE_STEP), None)
        for i in infos:
            if baseline is not None and i is not baseline:
                i["speedup_vs_notebook"] = i["images_per_s"] / baseline["images_per_s"]
            if bare is not None and i is not bare:
                fraction = i["images_per_s"] / bare["images_per_s"]
                i.update(fraction_of_bare_step=fraction, data_pipeline_overhead=1 - fraction)

    def lines(self) -> list[str]:
        """One line per benchmark, grouped: what the terminal summary prints."""
        out = []
        for group, infos in sorted(self.groups.items()):
            out.append(group)
            for i in infos:
                ratios = [f"{key}={i[key]:.3g}" for key in ("speedup_vs_notebook", "fraction_of_bare_step", "utilization")
                          if i.get(key) is not None]
                out.append(f"  {i['variant']:<34} {i['images_per_s']:>12,.1f} img/s  {' '.join(ratios)}")
        return out


# ---- FLOPs and peaks -------------------------------------------------------------------------
@functools.cache
def flops_per_image(model_name: str, image_size: int, *, train: bool, in_channels: int = 1,
                    num_classes: int = 10) -> float:
    """FLOPs of one image as FlopCounterMode counts them: convolutions and matmuls at 2 per
    multiply-add, normalization and activations not counted; train = forward + backward.

    Counted on the meta device: shapes only, no memory and no arithmetic."""
    batch = 2  # BatchNorm in training mode needs more than one value per channel
    with torch.device("meta"):
        model = build_model(model_name, in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        x = torch.randn(batch, in_channels, image_size, image_size)
        y = torch.zeros(batch, dtype=torch.int64)
    with FlopCounterMode(display=False) as counter:
        if train:
            F.cross_entropy(model(x), y).backward()
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops() / batch


def table_peak(name: str, dtype: str) -> tuple[bool, float | None]:
    """(whether GPU_PEAKS knows the GPU `name`, its dense peak FLOP/s for `dtype` or None)."""
    for pattern, peaks in GPU_PEAKS:
        if re.search(pattern, name):
            if dtype == "float32" and torch.backends.cudnn.allow_tf32 and "tfloat32" in peaks:
                return True, peaks["tfloat32"]  # without TF32 units (V100) float32 stays on FP32 units
            return True, peaks.get(dtype)
    return False, None


def gemm_peak(device: torch.device, dtype: torch.dtype, *, size: int, repeats: int = 10) -> float:
    """Best FLOP/s of a (size x size) @ (size x size) matmul over `repeats` tries: the dense
    peak this device reaches in practice with the current torch thread count. The best, not the
    mean: on a shared CPU some tries lose cores to other work, and a low peak would inflate
    every utilization."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool, BLAS workspace, cuBLAS handle
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def dtype_name(autocast) -> str:
    """"bfloat16" under a torch.autocast, "float32" under the nullcontext that stands for none."""
    return str(getattr(autocast, "fast_dtype", torch.float32)).removeprefix("torch.")
