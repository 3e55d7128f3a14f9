"""The file name a published benchmark run gets: results/bench/<label>.json, one per CPU/GPU.

A CPU's label is its vendor and family from the model name plus what it runs bf16 matrix math
on, e.g. "Intel(R) Xeon(R) Platinum 8488C" with AMX -> intel-xeon-amx-bf16, an AMD EPYC without
fast bf16 -> amd-epyc-avx2; a GPU's is its name, e.g. nvidia-h200. Run: python -m bench.label
"""

from __future__ import annotations

import re

from ablations.run.devices import cpu_capability, cpu_model, device_name
from bench.runs import BENCH_DEVICE

# Marks and filler words in model names ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz").
NOISE = re.compile(r"\((r|tm|c)\)|\bcpu\b|\bprocessor\b|@.*$", re.IGNORECASE)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_label(model: str, capability: str) -> str:
    """Vendor and family (the model name's first two words) plus the capability."""
    words = NOISE.sub(" ", model).split()
    return slug(" ".join(words[:2] + [capability]))


def bench_label() -> str:
    if BENCH_DEVICE.type == "cuda":
        return slug(device_name(BENCH_DEVICE))  # "NVIDIA H200" -> nvidia-h200
    return cpu_label(cpu_model(), cpu_capability())


if __name__ == "__main__":
    print(bench_label())
