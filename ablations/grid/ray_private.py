"""The private Ray instance a grid starts when given no cluster: reachable from this machine only,
and gone, files included, when the grid ends.

What Ray 2.60 does by default, and what this changes (checked with psutil in tests/test_ray_private.py):
- Ray swaps a node IP of 127.0.0.1 for this machine's outward address and binds its GCS, raylet,
  object manager and workers to all interfaces (`*:port`) and its runtime-env agent to that
  address. Told that it runs no cluster (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, its own default
  on macOS and Windows) it keeps 127.0.0.1 and binds every server there. Ray reads that switch
  when it is imported, so `before_import()` runs first.
- No dashboard, no metrics collection: nothing for a Prometheus endpoint to export.
- Token authentication, with a token of this instance's own in its folder (mode 0600); Ray
  would write one to ~/.ray/auth_token (mode 0644), which every later `ray start` on the
  machine would then use.
- Ray's temp and session folders (logs, sockets, the shipped code) in a temporary folder of the
  instance's own, removed with it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Read by Ray when imported: without it, 127.0.0.1 as the node IP becomes the outward address.
BEFORE_IMPORT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
TOKEN_NAME = "auth_token"

# One token per process: Ray's core reads the token once and keeps it, so a second private instance
# started from the same process (the Python API, twice) must ask for the same one.
_TOKEN = secrets.token_hex(32)
_folder: Path | None = None
_saved_env: dict[str, str | None] = {}


def before_import() -> None:
    """Set what Ray must see when it is first imported in this process; no effect once it is."""
    if "ray" not in sys.modules:
        _set_env(BEFORE_IMPORT)


def start(ray, *, num_cpus: int, runtime_env: dict) -> None:
    """Start the instance (ray.init) with everything above; on failure nothing is left behind."""
    global _folder
    # Ray's Unix sockets live in its session folder and must stay under 108 bytes: a short parent.
    parent = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)  # as Ray would make its own temp dir
    _folder = Path(tempfile.mkdtemp(prefix="ray-", dir=parent))
    token = _folder / TOKEN_NAME
    descriptor = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(_TOKEN)
    # RAY_AUTH_MODE unset: ray.init then turns token mode on itself, in this process too (a mode set
    # here after Ray's import would not reach its core), and finds the token at RAY_AUTH_TOKEN_PATH.
    _set_env({**BEFORE_IMPORT, "RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_TOKEN": None,
              "RAY_enable_metrics_collection": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK, include_dashboard=False,
                 dashboard_host=LOOPBACK, _temp_dir=str(_folder), runtime_env=runtime_env, logging_level="ERROR")
    except BaseException:
        stop()
        raise


def stop() -> None:
    """After ray.shutdown(): the environment as it was, and the instance's folder removed."""
    global _folder
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
        _folder = None


def _set_env(values: dict[str, str | None]) -> None:
    """Set (or, for None, unset) variables, remembering the first value each had for stop()."""
    for key, value in values.items():
        _saved_env.setdefault(key, os.environ.get(key))
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
