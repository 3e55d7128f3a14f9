"""The grid on a Ray cluster it did not start, as a Ray user runs it: `RAY_ADDRESS=... ablations
grid --backend ray` against a real head node (`ray start --head`).

The head runs a Python that has torch and Ray but not this suite, from a folder without the code,
and the driver runs from another folder with the suite on its PYTHONPATH only: a run can finish
only if the driver shipped the package (runtime_env py_modules). The head asks for a token, as
Ray's secured clusters do. Bad and unreachable addresses are one line, exit 2, within seconds, and
no store."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import ablations
from ablations.errors import UserError
from ablations.grid.ray_cluster import for_workers, resolve_address
from ablations.run.provenance import git_commit
from ablations.store.sqlite import Store, store_path

REPO = Path(ablations.__file__).resolve().parent.parent
RAY_EXTRA = "Ray is the optional `ray` extra: pip install -e '.[ray]'"
# One seed of the smoke grid: 4 runs of seconds each on a busy 2-core CPU, each learns (chance is 0.1).
SMALL = ("--seeds", "1")
ONE_RUN = (*SMALL, "--only", "augment=none", "--only", "weight_decay=0")
# Ray's own connection retries are cut to about 15 s (ablations.grid.ray_cluster.CONNECT_LIMITS); the
# rest is starting Python and importing torch on a loaded machine.
FAILS_WITHIN_S = 60
# Where a Ray process finds its cluster and token: the tests set them, whatever the caller's shell has.
DRIVER_RAY_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True)
class Cluster:
    python: Path  # the head's Python: torch and Ray, no suite
    root: Path  # its working folder; Ray's temp dir is root/ray
    gcs_port: int
    client_port: int
    token: dict[str, str]  # what a driver needs in its environment to be let in

    def driver_env(self, **extra: str) -> dict[str, str]:
        return driver_env(**self.token, **extra)


def token_auth(folder: Path) -> dict[str, str]:
    """Ray's token authentication with a token of this test's own: Ray would otherwise make one
    in ~/.ray/auth_token, which changes every later `ray start` on the machine."""
    path = folder / "auth_token"
    path.write_text(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_without_the_suite(venv: Path) -> Path:
    """A venv that sees every package this Python has except the suite: a node with the suite's
    dependencies installed, not the suite (an editable install included)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "ablations" not in entry.name:
            (site / entry.name).symlink_to(entry)
    return python


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies left to a container's init do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    pytest.importorskip("ray", reason=RAY_EXTRA)
    root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    python = python_without_the_suite(root / "py")
    gcs_port, client_port, token = free_port(), free_port(), token_auth(root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ABLATIONS_DATA_ROOT", *DRIVER_RAY_VARS)}
    env.update(token)
    # Its own session: every process the head starts is in one process group, ended by its id below.
    start = subprocess.Popen(
        [python, "-m", "ray.scripts.scripts", "start", "--head", f"--port={gcs_port}",
         f"--ray-client-server-port={client_port}", f"--dashboard-port={free_port()}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=false", f"--temp-dir={root / 'ray'}"],
        cwd=root, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out, _ = start.communicate(timeout=180)
        assert start.returncode == 0, out[-3000:]
        yield Cluster(python, root, gcs_port, client_port, token)
    finally:
        # SIGKILL: Ray's GCS and monitor outlive a SIGTERM by 15 s and more; their state goes with root
        with contextlib.suppress(ProcessLookupError):
            os.killpg(start.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while live_processes_in_group(start.pid) and time.time() < deadline:
            time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)
        assert not live_processes_in_group(start.pid), "the Ray head left processes running"


def driver_env(**extra: str) -> dict[str, str]:
    """The driver's environment: the suite on PYTHONPATH only, no Ray address or token unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("ABLATIONS_DATA_ROOT", *DRIVER_RAY_VARS)}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def grid(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ablations.run_grid", "--grid", "smoke", "--backend", "ray", "--no-report", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def stored_runs(results: Path) -> list[dict]:
    with Store.open_existing(store_path(results)) as store:
        return store.runs()


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """The driver's folder: no suite in it, so Ray's habit of putting the driver's folder on the
    workers' path cannot hand them the code."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


@pytest.mark.ray
def test_the_grid_runs_on_the_cluster_in_RAY_ADDRESS_with_the_code_it_ships(cluster, elsewhere, tmp_path):
    nodes = subprocess.run([cluster.python, "-c", "import ablations"], capture_output=True, text=True, cwd=cluster.root,
                           env={"PATH": os.environ["PATH"]})
    assert nodes.returncode != 0 and "No module named 'ablations'" in nodes.stderr  # the control: no suite there
    results = tmp_path / "results"

    first = grid(elsewhere, cluster.driver_env(RAY_ADDRESS=f"127.0.0.1:{cluster.gcs_port}"), "--results", str(results),
                 *SMALL)

    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 runs, 0 finished before, 4 to run on ray with 2 worker(s)" in first.stdout
    assert "4 done, 0 diverged, 0 failed, 0 skipped" in first.stdout
    runs = stored_runs(results)
    assert [r["status"] for r in runs] == ["done"] * 4
    assert min(r["final_test_acc"] for r in runs) > 0.5  # learned: chance is 0.1
    # the shipped copy has no git checkout: the commit is the driver's, the version the code's
    assert {r["provenance"]["git_commit"] for r in runs} == {git_commit()}
    assert {r["provenance"]["versions"]["ablations"] for r in runs} == {ablations.__version__}

    # `auto`: the cluster `ray start` began on this machine, found through Ray's temp dir
    again = grid(elsewhere, cluster.driver_env(RAY_TMPDIR=str(cluster.root)), "--results", str(results), "--address",
                 "auto", *SMALL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 done, 0 diverged, 0 failed, 4 skipped (finished before)" in again.stdout
    assert [(r["run_id"], r["status"], r["attempts"]) for r in stored_runs(results)] == [
        (r["run_id"], "done", 1) for r in runs]


@pytest.mark.ray
@pytest.mark.parametrize("how", ["RAY_ADDRESS, data root from the environment", "ray://, data root in the config"])
def test_the_drivers_data_root_reaches_the_workers(cluster, elsewhere, tmp_path, how):
    """A relative data root is the driver's folder, wherever the workers run: the head's folder has
    no `data` and its environment no ABLATIONS_DATA_ROOT, so only the driver's path finds MNIST."""
    from ablations.data.root import resolve_data_root

    mnist = resolve_data_root(None).resolve()
    if not (mnist / "MNIST" / "raw").is_dir():
        pytest.skip(f"needs the real MNIST files under {mnist}")
    (elsewhere / "data").symlink_to(mnist)
    assert not (cluster.root / "data").exists()
    results = tmp_path / "results"
    if how.startswith("RAY_ADDRESS"):
        env, args = cluster.driver_env(RAY_ADDRESS=f"127.0.0.1:{cluster.gcs_port}", ABLATIONS_DATA_ROOT="data"), ()
    else:
        args = ("--address", f"ray://127.0.0.1:{cluster.client_port}", "--set", "data_root=data")
        env = cluster.driver_env()

    proc = grid(elsewhere, env, "--results", str(results), *ONE_RUN, "--set", "dataset=mnist", "--set",
                "train_subset=1000", "--set", "test_subset=1000", *args)

    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = stored_runs(results)
    assert run["status"] == "done" and run["final_test_acc"] > 0.3, run["error"]


@pytest.mark.ray
def test_local_starts_a_private_instance_even_with_RAY_ADDRESS_set(elsewhere, tmp_path):
    pytest.importorskip("ray", reason=RAY_EXTRA)
    results = tmp_path / "results"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # the instance's logs and sockets, short paths
    try:
        env = driver_env(RAY_ADDRESS=f"127.0.0.1:{free_port()}", RAY_TMPDIR=ray_tmp, **token_auth(tmp_path))
        proc = grid(elsewhere, env, "--results", str(results), "--address", "local", *ONE_RUN)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"1 to run on ray with {os.cpu_count()} worker(s)" in proc.stdout  # a CPU per run, every core here
    assert [r["status"] for r in stored_runs(results)] == ["done"]


@pytest.mark.ray
def test_a_driver_without_the_clusters_token_is_told_to_set_it(cluster, elsewhere, tmp_path):
    results = tmp_path / "results"
    start = time.monotonic()
    proc = grid(elsewhere, driver_env(RAY_ADDRESS=f"127.0.0.1:{cluster.gcs_port}"), "--results", str(results))

    assert time.monotonic() - start < FAILS_WITHIN_S
    assert one_error_line(proc) == (f"error: the Ray cluster at 127.0.0.1:{cluster.gcs_port} ($RAY_ADDRESS) asks for a "
                                    "token: set RAY_AUTH_MODE=token here, with the head's token in $RAY_AUTH_TOKEN, "
                                    "$RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
    assert not results.exists()


@pytest.mark.ray
@pytest.mark.parametrize("where,address,message", [
    ("--address", "nohost:notaport", "error: --address 'nohost:notaport' is not a Ray address; give host:port, "
                                     "ray://host:port, auto or local"),
    ("RAY_ADDRESS", "nohost:notaport", "error: $RAY_ADDRESS 'nohost:notaport' is not a Ray address"),
    ("--address", "ray://head", "error: --address 'ray://head' is not a Ray address"),
    ("RAY_ADDRESS", "127.0.0.1:{closed}", "error: cannot reach Ray at 127.0.0.1:{closed} ($RAY_ADDRESS): "
                                          "connection refused; start the cluster (`ray start --head`)"),
    ("--address", "ray://127.0.0.1:{closed}", "error: cannot reach Ray at ray://127.0.0.1:{closed} (--address): "
                                              "connection refused"),
    ("--address", "no-such-host.invalid:6379", "error: cannot reach Ray at no-such-host.invalid:6379 (--address): "
                                               "unknown host 'no-such-host.invalid'"),
])
def test_a_bad_or_unreachable_address_is_one_line_in_seconds_and_no_store(elsewhere, tmp_path, where, address,
                                                                          message):
    pytest.importorskip("ray", reason=RAY_EXTRA)
    closed = free_port()  # nothing listens there once the probe socket is closed
    address, message = address.format(closed=closed), message.format(closed=closed)
    results = tmp_path / "results"
    env, args = (driver_env(RAY_ADDRESS=address), ()) if where == "RAY_ADDRESS" else (driver_env(), (where, address))

    start = time.monotonic()
    proc = grid(elsewhere, env, "--results", str(results), *args)

    assert time.monotonic() - start < FAILS_WITHIN_S
    assert one_error_line(proc).startswith(message)
    assert not results.exists()


@pytest.mark.ray
def test_a_port_that_is_not_rays_fails_in_seconds_with_one_line(elsewhere, tmp_path):
    """It takes the TCP connection, so only Ray's own connection can tell; its retries would take
    minutes and its core logs each one to stderr."""
    pytest.importorskip("ray", reason=RAY_EXTRA)
    results = tmp_path / "results"
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # Ray dials this machine's address for 127.0.0.1
        listener.listen(8)
        port = listener.getsockname()[1]
        start = time.monotonic()
        proc = grid(elsewhere, driver_env(), "--results", str(results), "--address", f"127.0.0.1:{port}")
        seconds = time.monotonic() - start

    assert seconds < FAILS_WITHIN_S
    assert one_error_line(proc).startswith(f"error: cannot connect to Ray at 127.0.0.1:{port} (--address): "
                                           "Failed to connect to Ray cluster at ")
    assert not results.exists()


def test_the_address_is_the_flag_then_RAY_ADDRESS_then_a_private_instance(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert (resolve_address(None).text, resolve_address(None).starts_instance) == ("local", True)
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert (resolve_address(None).text, resolve_address(None).origin) == ("head:6379", "$RAY_ADDRESS")
    assert resolve_address("ray://other:10001").origin == "--address"
    assert (resolve_address("ray://other:10001").host, resolve_address("ray://other:10001").port) == ("other", 10001)
    assert (resolve_address("[::1]:6379").host, resolve_address("[::1]:6379").port) == ("::1", 6379)
    assert resolve_address("auto").host is None and resolve_address("local").starts_instance


@pytest.mark.parametrize("bad", ["head", "head:", ":6379", "head:0", "head:70000", "http://head:6379", "ray://"])
def test_a_malformed_address_says_which_forms_ray_takes(bad):
    with pytest.raises(UserError, match=r"is not a Ray address; give host:port, ray://host:port, auto or local"):
        resolve_address(bad)


def test_a_relative_data_root_in_a_config_is_the_drivers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert for_workers({"data_root": "data", "seed": 0}) == {"data_root": str(tmp_path.resolve() / "data"), "seed": 0}
    assert for_workers({"data_root": None, "seed": 0}) == {"data_root": None, "seed": 0}
