"""The private Ray instance a grid starts (`--backend ray`, no address): only this machine can reach
it, and it leaves no file behind, in the home folder or the temp folder.

Every socket that the grid's processes (the driver, Ray's GCS, raylet, agents and workers: the
driver's process tree) listen on is sampled while the grid runs, with psutil."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import ablations

REPO = Path(ablations.__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
ONE_RUN = ("--grid", "smoke", "--seeds", "1", "--only", "augment=none", "--only", "weight_decay=0", "--set",
           "epochs=3", "--backend", "ray", "--workers", "1", "--no-report")


def gcs_auth(psutil, root: int) -> dict[str, str]:
    """The authentication settings Ray's GCS server runs with, {} until it runs."""
    try:
        for process in psutil.Process(root).children(recursive=True):
            if process.name() == "gcs_server":
                return {k: v for k, v in process.environ().items() if k.startswith("RAY_AUTH")}
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        pass
    return {}


def listening(psutil, root: int) -> set[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of `root` and its descendants."""
    found = set()
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for process in tree:
        try:
            name = process.name()
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port, name))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.ray
def test_a_private_instance_listens_on_loopback_only_and_leaves_no_file(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is the optional `ray` extra: pip install -e '.[ray]'")
    psutil = pytest.importorskip("psutil", reason="psutil is in the `test` extra")
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONPATH=str(REPO), HOME=str(home), RAY_TMPDIR=str(ray_tmp), OMP_NUM_THREADS="1")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ablations.run_grid", *ONE_RUN, "--results",
                                 str(tmp_path / "results")], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen: set[tuple[str, int, str]] = set()
        auth: dict[str, str] = {}
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= listening(psutil, proc.pid)
            auth = auth or gcs_auth(psutil, proc.pid)
            time.sleep(0.3)
        out, err = proc.communicate(timeout=60)
        left = sorted(p.name for p in ray_tmp.iterdir())
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    assert proc.returncode == 0, err[-3000:]
    assert "1 done, 0 diverged, 0 failed" in out
    names = {name for _, _, name in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # the control: the probe sees Ray's servers
    assert {(ip, port, name) for ip, port, name in seen if ip not in LOOPBACK} == set()
    assert auth.get("RAY_AUTH_MODE") == "token"  # the instance asks for a token: its own, in its own folder
    assert Path(auth.get("RAY_AUTH_TOKEN_PATH", "")).parent.parent == ray_tmp
    assert not (home / ".ray").exists()  # no token (or anything else) in the home folder
    assert left == []  # Ray's temp and session folders went with the grid


TWICE = """
from ablations.grid.ray_cluster import connect, disconnect
for _ in range(2):
    ray = connect(None, cpus_per_run=1)
    print(ray.get(ray.remote(lambda: 42).remote()), ray.util.get_node_ip_address(), flush=True)
    disconnect()
"""


@pytest.mark.ray
def test_one_process_can_start_a_private_instance_twice(tmp_path: Path) -> None:
    """As the Python API does when called twice: Ray's core keeps the first instance's token."""
    pytest.importorskip("ray", reason="Ray is the optional `ray` extra: pip install -e '.[ray]'")
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path), RAY_TMPDIR=str(ray_tmp))
    try:
        proc = subprocess.run([sys.executable, "-c", TWICE], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        left = sorted(p.name for p in ray_tmp.iterdir())
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == ["42 127.0.0.1", "42 127.0.0.1"]
    assert left == []
