"""Where and with what a run was made: stored with every run, shown in every report."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

from ablations import __version__
from ablations.run.devices import cpu_capability, device_name

# Versions stored beside this package's own, which is that of the code running: Ray may have
# shipped it to a node where it is not installed.
# timm: a timm:NAME model is defined by the installed version (left out where it is not installed).
PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "scipy", "seaborn", "ray")
# A copy of the package that Ray shipped to a worker has no git checkout around it: the driver
# names the commit of the code it shipped (ablations.grid.ray_cluster.worker_runtime_env).
COMMIT_ENV = "ABLATIONS_GIT_COMMIT"


@functools.cache
def git_commit() -> str | None:
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    root = Path(__file__).resolve().parents[2]  # the checkout that holds ablations/
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
    versions = {"python": platform.python_version(), "ablations": __version__}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def provenance(device, precision: str | None = None, param_count: int | None = None,
               split_sizes: dict[str, int] | None = None, pack_size: int = 1) -> dict:
    """Everything needed to say where a number came from; `precision` as the run resolved it, the
    parameters of the model it trained (how big a torchvision or timm model was, as built here), and
    `split_sizes` the images in its train, val and test splits (the report's test-set noise and
    budget need them for datasets whose sizes it cannot know, such as an image folder), and `pack_size` the
    runs trained as one model with it (ablations.run.packed_loop; 1: trained alone)."""
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
        "split_sizes": split_sizes,
        "param_count": param_count,
        # runs training at once on this device (local worker processes): throughput measured shared
        "concurrent_runs": int(os.environ.get("ABLATIONS_CONCURRENT_RUNS", "1")),
        "pack_size": pack_size,
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
