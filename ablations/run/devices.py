"""The device a run trains on: which one, its name, what its CPU can do fast, its peak memory.

Precision follows the hardware (`resolve_precision`): bf16 autocast on CUDA and on CPUs whose
matrix kernels run bf16 natively (AMX-BF16 or AVX512-BF16; oneDNN then takes its bf16 brgemm
path), fp32 elsewhere. Measured on a 2-core Xeon with AMX, 28 px train step, batch 64:
bf16 1.4-1.5x fp32; on an AVX2-only EPYC bf16 is emulated and slower, so fp32 stays there.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
from pathlib import Path

from ablations.errors import UserError

# Fastest first: what the CPU offers for bf16 matrix math, as named in the report.
AMX_BF16, AVX512_BF16 = "AMX-BF16", "AVX512-BF16"
FAST_BF16_CAPABILITIES = (AMX_BF16, AVX512_BF16)


def resolve_device(name: str = "auto"):
    """auto: cuda, then mps, then cpu. A named device that is not there is a one-line error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"device {name!r} is not available here (devices: {', '.join(available_devices())}); "
                        "use --device auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device 'mps' is not available here (devices: {', '.join(available_devices())})")
    return device


def available_devices() -> list[str]:
    import torch

    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"{cpu_model()} ({threads} thread{'' if threads == 1 else 's'})"


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# oneDNN's ISA levels as its own bit masks (dnnl_cpu_isa_t): a level includes every level whose bits it holds.
ONEDNN_ISA_MASKS = {
    "SSE41": 0x1, "AVX": 0x3, "AVX2": 0x7, "AVX2_VNNI": 0xF, "AVX2_VNNI_2": 0x1F, "AVX512_CORE": 0x27,
    "AVX512_CORE_VNNI": 0x67, "AVX512_CORE_BF16": 0xE7, "AVX10_1_512": 0x1EF, "AVX512_CORE_FP16": 0x1EF,
    "AVX10_1_512_AMX": 0xFEF, "AVX512_CORE_AMX": 0xFEF, "AVX10_1_512_AMX_FP16": 0x1FEF, "AVX512_CORE_AMX_FP16": 0x1FEF,
}
# The least oneDNN level each fast-bf16 capability needs.
_BF16_NEEDS = {AMX_BF16: ONEDNN_ISA_MASKS["AVX512_CORE_AMX"], AVX512_BF16: ONEDNN_ISA_MASKS["AVX512_CORE_BF16"]}


@functools.cache
def cpu_capability() -> str:
    """What this CPU runs bf16 matrix math on, as torch and oneDNN see it.

    torch enables AMX tiles itself (`_init_amx` asks the kernel for them and says whether it
    got them); AVX512-BF16 has no torch query, so the kernel's CPU flags answer that one.
    Otherwise torch's own vector ISA level (AVX2, AVX512, ...): bf16 is emulated there.
    oneDNN's and ATen's own overrides cap it, so `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`
    runs an AMX machine as an AVX2 one (precision auto -> fp32), as the kernels themselves then do.
    """
    import torch

    found = torch.backends.cpu.get_cpu_capability()  # honours ATEN_CPU_CAPABILITY itself
    init_amx = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
    if init_amx is not None and init_amx():
        found = AMX_BF16
    elif "avx512_bf16" in _cpu_flags() and torch.backends.mkldnn.is_available():
        found = AVX512_BF16
    if found in _BF16_NEEDS and (_onednn_isa_cap() & _BF16_NEEDS[found] != _BF16_NEEDS[found] or _aten_below_avx512()):
        return torch.backends.cpu.get_cpu_capability()
    return found


def _onednn_isa_cap() -> int:
    """The ISA bits oneDNN may use: all, unless ONEDNN_MAX_CPU_ISA (or its older name) lowers them."""
    value = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return ONEDNN_ISA_MASKS.get(value, -1)  # DEFAULT, ALL or unset: no cap


def _aten_below_avx512() -> bool:
    """ATEN_CPU_CAPABILITY set to a level without AVX-512 (default, avx2): ATen's bf16 kernels are emulated."""
    value = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    return bool(value) and not value.startswith("avx512")


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str, device_type: str, capability: str | None = None) -> str:
    """'auto' -> 'bf16' on CUDA and on CPUs with fast bf16 kernels, else 'fp32'; others as given.

    `capability` defaults to this machine's CPU; tests pass one to drive both branches."""
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "bf16"
    if device_type == "cpu":
        return "bf16" if (capability or cpu_capability()) in FAST_BF16_CAPABILITIES else "fp32"
    return "fp32"


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA and MPS run asynchronously); CPU work is done when a call returns.
    A host clock read after it times the work, not its queueing."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device) -> int:
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Linux reports ru_maxrss in KiB: the process's peak resident set, a fair CPU analogue.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
