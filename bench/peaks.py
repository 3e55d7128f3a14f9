"""FLOPs of the models and the peak FLOP/s they are held against (utilization = achieved / peak).

FLOPs are counted as 2 x multiply-accumulates (MACs) of convolutions and matmuls, as
torch.utils.flop_counter counts them; normalization and activations are not counted.
Peaks: a known GPU's datasheet figure (GPU_PEAKS); a CPU or an unknown GPU, the best rate of a
large matmul in that dtype. A shared CPU's matrix throughput drifts with its neighbours' load (the
bf16 GEMM peak of one 2-core Xeon measured 2.02 and 0.81 TFLOP/s in two runs a day apart), so a
utilization is held against GEMMs measured right before and right after the work it rates
(`PeakMeter.bracket`), not against one figure from the start of the run.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ablations.models.notebook import build_model
from ablations.run.devices import device_name
from bench.measure import synchronize

FLOPS_CONVENTION = "2 x MACs (conv + matmul; norm and activations not counted; train = forward + backward)"

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
# 2048^2 takes ~0.12 s in fp32 and ~0.04 s in bf16 (AMX) on 2 Xeon cores: big enough that
# oneDNN runs at full rate (4096^2 was no faster), small enough for 11 tries in ~2 s; on a
# GPU 8192^2 (1.1 TFLOP) fills every SM.
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}


@functools.cache
def flops_per_image(model_name: str, image_size: int, *, train: bool, in_channels: int = 1,
                    num_classes: int = 10) -> float:
    """FLOPs (2 x MACs) of one image; train = forward + backward. Counted on the meta device:
    shapes only, no memory and no arithmetic."""
    batch = 2  # BatchNorm in training mode needs more than one value per channel
    build = functools.partial(build_model, model_name, in_channels=in_channels, num_classes=num_classes,
                              image_size=image_size)
    try:
        with torch.device("meta"):
            model = build()
    except NotImplementedError:  # a builder that reads values back while it builds (torchvision's RegNets)
        with torch.random.fork_rng(devices=[]):  # built on the CPU, then shapes only; no draw the caller sees
            model = build().to("meta")
    x = torch.randn(batch, in_channels, image_size, image_size, device="meta")
    y = torch.zeros(batch, dtype=torch.int64, device="meta")
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


def datasheet_peak(device: torch.device, dtype: str) -> tuple[bool, float | None]:
    """(whether the device's peak comes from GPU_PEAKS, that peak): CPUs and unknown GPUs are measured."""
    return table_peak(device_name(device), dtype) if device.type == "cuda" else (False, None)


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


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """Dense peak FLOP/s of `device` in `dtype` ("float32", "bfloat16") at the current thread count."""
    known, value = datasheet_peak(device, dtype)
    if known:
        return value
    return _measured_peak(str(device), dtype, torch.get_num_threads())


T = TypeVar("T")


class PeakMeter:
    """Peaks measured beside the work they rate; remembers every measurement for the run's record."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.measured: dict[str, list[float]] = defaultdict(list)  # dtype -> FLOP/s, in measurement order

    def now(self, dtype: str) -> float | None:
        """The peak in `dtype` as the device gives it at this moment (a datasheet peak never moves)."""
        known, value = datasheet_peak(self.device, dtype)
        if known:
            return value
        value = gemm_peak(self.device, getattr(torch, dtype), size=GEMM_SIZE.get(self.device.type, GEMM_SIZE["cpu"]))
        self.measured[dtype].append(value)
        return value

    def bracket(self, dtype: str, work: Callable[[], T], *, timed: bool = True) -> tuple[T, float | None]:
        """(work's result, the higher of the peaks measured just before and just after it): the
        higher one, because a GEMM that lost cores to other work would flatter the utilization.
        Untimed work (--benchmark-disable) is rated against the run's first peak, measured once."""
        if not timed:
            return work(), peak_flops(self.device, dtype)
        before = self.now(dtype)
        result = work()
        after = self.now(dtype)
        peaks = [p for p in (before, after) if p is not None]
        return result, max(peaks) if peaks else None

    def summary(self, dtype: str) -> dict[str, float | int] | None:
        """min, median and max of the peaks measured in this run, and how many there were."""
        values = sorted(self.measured.get(dtype, []))
        if not values:
            return None
        return {"min": values[0], "median": values[len(values) // 2], "max": values[-1], "n": len(values)}


@functools.cache
def _measured_peak(device: str, dtype: str, threads: int) -> float:
    device_ = torch.device(device)
    return gemm_peak(device_, getattr(torch, dtype), size=GEMM_SIZE.get(device_.type, GEMM_SIZE["cpu"]))
