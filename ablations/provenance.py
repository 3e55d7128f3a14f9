"""Where and with what a run was made: stored with every run, shown in every report."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

from ablations.devices import cpu_capability, device_name

# timm: a timm:NAME model is defined by the installed version (left out where it is not installed).
PACKAGES = ("ablations", "torch", "torchvision", "timm", "numpy", "pandas", "scipy", "seaborn", "ray")


@functools.cache
def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # published outputs under results/ are not code: rewriting them is not a change of the suite
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out + ("-dirty" if dirty else "")


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def provenance(device, precision: str | None = None, param_count: int | None = None) -> dict:
    """Everything needed to say where a number came from; `precision` as the run resolved it, and
    the parameters of the model it trained (how big a torchvision or timm model was, as built here)."""
    import torch

    return {
        "git_commit": git_commit(),
        "versions": package_versions(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(device),
        "device_name": device_name(device),
        "cpu_capability": cpu_capability(),
        "precision": precision,
        "param_count": param_count,
        # runs training at once on this device (local worker processes): throughput measured shared
        "concurrent_runs": int(os.environ.get("ABLATIONS_CONCURRENT_RUNS", "1")),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
