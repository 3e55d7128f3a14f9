"""Fixtures and hooks of the benchmark suites: the device, real MNIST on it, peak FLOP/s,
the registry of within-group ratios, seeding, and the machine description saved with each run.

The device is $ABLATIONS_BENCH_DEVICE, else auto (cuda, then mps, then cpu). The root
conftest points $ABLATIONS_DATA_ROOT at ../shared/data when the MNIST files are there.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest
import torch

from ablations.data import TensorDataset, load_dataset
from ablations.provenance import cpu_model, device_name
from ablations.trainer import seed_everything
from bench.measure import BENCH_DEVICE, Registry, gemm_peak, table_peak

REGISTRY = pytest.StashKey[Registry]()
# 2048^2 fp32 takes ~0.25 s on 2 CPU cores: big enough that BLAS runs at full rate, small
# enough for 11 tries in ~3 s; on a GPU 8192^2 (1.1 TFLOP) fills every SM.
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REGISTRY] = Registry()


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    if BENCH_DEVICE.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() does: the fastest conv algorithm per shape
    return BENCH_DEVICE


@pytest.fixture(scope="session")
def registry(pytestconfig: pytest.Config) -> Registry:
    return pytestconfig.stash[REGISTRY]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    seed_everything(0)


@pytest.fixture(scope="session")
def mnist(bench_device) -> Callable[[int], TensorDataset]:
    """n -> real MNIST with a class-balanced n-image training subset, as uint8 on the device."""
    cache: dict[int, TensorDataset] = {}

    def subset(n: int) -> TensorDataset:
        if n not in cache:
            cache[n] = load_dataset("mnist", train_subset=n, test_subset=1000, device=bench_device)
        return cache[n]

    return subset


@pytest.fixture(scope="session")
def peak_flops(bench_device) -> Callable[[str], float | None]:
    """dtype name ("float32", "bfloat16") -> dense peak FLOP/s of the benchmark device.

    Known GPUs: their datasheet figure (bench.measure.GPU_PEAKS). A CPU or an unknown GPU: the
    best large-matmul rate, measured once per session per dtype with the current thread count.
    """
    measured: dict[str, float] = {}

    def peak(dtype: str) -> float | None:
        if bench_device.type == "cuda":
            known, value = table_peak(device_name(bench_device), dtype)
            if known:
                return value
        if dtype not in measured:
            size = GEMM_SIZE.get(bench_device.type, GEMM_SIZE["cpu"])
            measured[dtype] = gemm_peak(bench_device, getattr(torch, dtype), size=size)
        return measured[dtype]

    return peak


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Saved with every run: what the numbers depend on beyond the code."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    machine_info.update(
        bench_device=str(BENCH_DEVICE),
        bench_device_name=device_name(BENCH_DEVICE),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=cudnn,
        torch_threads=torch.get_num_threads(),
        cpu_model=cpu_model(),
        gpu=_gpu_info() if BENCH_DEVICE.type == "cuda" else None,
    )


def _gpu_info() -> dict:
    props = torch.cuda.get_device_properties(BENCH_DEVICE)
    return {
        "name": props.name,
        "memory_bytes": props.total_memory,
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "driver": _nvidia_driver(),
    }


def _nvidia_driver() -> str | None:
    """The driver version from nvidia-smi, or None where it is not installed (torch does not report it)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Images/s and ratios per group, one line per benchmark: the numbers a person quotes."""
    registry = config.stash.get(REGISTRY, None)
    if not registry or not registry.groups:
        return
    untimed = " (--benchmark-disable: one call each, noisy)" if config.getoption("benchmark_disable", False) else ""
    terminalreporter.section(f"throughput on {device_name(BENCH_DEVICE)}{untimed}")
    for line in registry.lines():
        terminalreporter.write_line(line)
