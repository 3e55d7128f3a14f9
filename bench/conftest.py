"""Fixtures and hooks of the benchmark suites: the device, real MNIST on it, peak FLOP/s, the
registry of within-group ratios, the suites' order, and the machine description saved with each run.

The device is $ABLATIONS_BENCH_DEVICE, else auto (cuda, then mps, then cpu). The root
conftest points $ABLATIONS_DATA_ROOT at ../shared/data when the MNIST files are there.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ablations.data.dataset import TensorDataset, load_dataset
from ablations.run.devices import cpu_model, device_name
from bench.peaks import GEMM_SIZE, PeakMeter, peak_flops
from bench.record import Registry
from bench.runs import BENCH_DEVICE, CPU_CAPABILITY, PEAK_DTYPE, PRECISIONS

REGISTRY = pytest.StashKey[Registry]()
# The model step first: it is the suite a hardware comparison quotes, and it should not run
# last on a machine that has warmed up (or been taken over) during the long data suites.
SUITE_ORDER = ("test_model", "test_transforms", "test_loading", "test_epoch", "test_packed")
BENCH_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REGISTRY] = Registry()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run bench/'s suites in SUITE_ORDER; within a file, in parametrization order (stable sort)."""

    def rank(item: pytest.Item) -> int:
        path = Path(item.fspath)
        if path.parent != BENCH_DIR or path.stem not in SUITE_ORDER:
            return -1  # anything else keeps its place ahead of the benchmarks
        return SUITE_ORDER.index(path.stem)

    items.sort(key=rank)


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
    torch.manual_seed(0)  # random inputs and PIL references draw from the global generator


@pytest.fixture(scope="session")
def mnist(bench_device) -> Callable[[int | None], TensorDataset]:
    """n -> real MNIST with a class-balanced n-image training subset (None: the whole train split,
    less validation), as uint8 on the device."""
    cache: dict[int | None, TensorDataset] = {}

    def subset(n: int | None) -> TensorDataset:
        if n not in cache:
            cache[n] = load_dataset("mnist", train_subset=n, test_subset=1000, device=bench_device)
        return cache[n]

    return subset


# One per run: the benchmarks measure peaks through it, and the machine info summarizes them.
PEAKS = PeakMeter(BENCH_DEVICE)


@pytest.fixture(scope="session")
def peak() -> PeakMeter:
    """Dense peak FLOP/s of the benchmark device, measured beside the work it rates (bench.peaks)."""
    return PEAKS


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Saved with every run: what the numbers depend on beyond the code. The peaks are the ones
    the utilizations were computed against (cached from the run, measured now if none was)."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    on_cuda = BENCH_DEVICE.type == "cuda"
    machine_info.update(
        bench_device=str(BENCH_DEVICE),
        bench_device_name=device_name(BENCH_DEVICE),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cpu_model=cpu_model(),
        cpu_capability=CPU_CAPABILITY,
        bench_precisions=list(PRECISIONS),
        # the most the device gave in the run; each utilization has its own bracketing peak beside it
        peak_flops_per_s={PEAK_DTYPE[p]: _run_peak(PEAK_DTYPE[p]) for p in PRECISIONS},
        peak_flops_range={PEAK_DTYPE[p]: PEAKS.summary(PEAK_DTYPE[p]) for p in PRECISIONS},
        peak_flops_source=("datasheet where known (bench.peaks.GPU_PEAKS), else " if on_cuda else "")
        + f"best of 10 {GEMM_SIZE.get(BENCH_DEVICE.type, GEMM_SIZE['cpu'])}^2 GEMMs at {torch.get_num_threads()} threads, "
        "measured before and after each rated benchmark (the higher of the two is its peak)",
        cuda=torch.version.cuda,
        cudnn=cudnn,
        gpu=_gpu_info() if on_cuda else None,
    )


def _run_peak(dtype: str) -> float | None:
    summary = PEAKS.summary(dtype)
    return summary["max"] if summary else peak_flops(BENCH_DEVICE, dtype)


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
    """Images/s and ratios per group, one line per benchmark, then the headline figures against
    their targets: the numbers a person quotes."""
    registry = config.stash.get(REGISTRY, None)
    if not registry or not registry.groups:
        return
    untimed = " (--benchmark-disable: one call each, noisy)" if config.getoption("benchmark_disable", False) else ""
    terminalreporter.section(f"throughput on {device_name(BENCH_DEVICE)}, {CPU_CAPABILITY}{untimed}")
    for line in registry.lines():
        terminalreporter.write_line(line)
    for group, infos in sorted(registry.groups.items()):
        for info in infos:
            for key, target in info.get("targets", {}).items():
                value = info.get(key)
                shown = "not measured" if value is None else f"{value:.3g} ({'met' if value >= target else 'missed'})"
                ceiling = info.get("kernel_ceiling") if key == "utilization" else None
                allowed = f"; the step's matrix kernels alone allow {ceiling:.3g}" if ceiling is not None else ""
                terminalreporter.write_line(f"headline {group} / {info['variant']}: {key} {shown}, target >= {target}{allowed}")
