"""The grid's link to Ray: which cluster, whether it answers, and what its workers are given.

The address is --address, else $RAY_ADDRESS, else `local`: a private instance that only this
machine can reach and that ends, with its files, when the grid does (`ablations.grid.ray_private`).
Ray takes num_cpus and the node's IP only when it starts the instance itself; connecting to a
cluster (`host:port`, `ray://host:port`, `auto`) passes the address and the runtime_env alone,
since Ray refuses the rest there.

Workers get the code and the data root through the runtime_env: `py_modules` ships this package,
so a node needs Python, torch and the suite's other dependencies but not the suite itself, and
$ABLATIONS_DATA_ROOT is the driver's data root made absolute. A run's result comes back as its
task's return value; only the driver writes the store.

A cluster that is not there fails in seconds, before any store exists: a TCP connect to host:port
first, then Ray's own connection with its retries cut from minutes to one attempt.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ablations
from ablations.data.root import DATA_ROOT_ENV, resolve_data_root
from ablations.errors import UserError
from ablations.grid import ray_private
from ablations.run.provenance import COMMIT_ENV, git_commit

ADDRESS_ENV = "RAY_ADDRESS"
LOCAL, AUTO, CLIENT_SCHEME = "local", "auto", "ray://"
ADDRESS_FORMS = "host:port, ray://host:port, auto or local"
RAY_MISSING = 'the ray backend needs Ray, which is not installed here: pip install -e ".[ray]", or use --backend local'
# How long the TCP check waits for host:port to accept a connection (a dropped SYN never answers).
REACH_TIMEOUT_S = 5.0
# Ray's own limits on reaching a cluster add up to minutes against a port that accepts the TCP
# connection but is not Ray's (20 attempts of 35 s each, measured with Ray 2.60); these make it one
# attempt of about 15 s. Ray reads some when imported and the others when connecting, so both
# happen under them; a value the user set is kept.
CONNECT_LIMITS = {
    "RAY_gcs_server_port_wait_time_s": "1",  # attempts at the GCS, 1 s apart [20]
    "RAY_py_gcs_connect_timeout_s": "5",  # each attempt's wait for the cluster id, in s [30]
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "5",  # ray://: each of its 3 attempts, in s [5, 10, 15]
}
# A driver sends its token only when told to (Ray never sends one to an address given explicitly).
TOKEN_HINT = ("set RAY_AUTH_MODE=token here, with the head's token in $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH "
              "or ~/.ray/auth_token")
# Ray ships what `py_modules` names as a zip: no bytecode, which each Python writes for itself.
SHIP_EXCLUDES = ["__pycache__", "*.pyc"]

_connected_here = False  # this process started or joined Ray through connect(), so it also disconnects


@dataclass(frozen=True)
class RayAddress:
    """An address as ray.init takes it, with where it came from for the messages."""

    text: str
    origin: str  # "--address", "$RAY_ADDRESS" or "default"
    host: str | None = None  # set for host:port and ray://host:port
    port: int | None = None

    @property
    def starts_instance(self) -> bool:
        return self.text == LOCAL

    def __str__(self) -> str:
        return self.text if self.origin == "default" else f"{self.text} ({self.origin})"


def resolve_address(address: str | None) -> RayAddress:
    """--address, else $RAY_ADDRESS, else a private local instance; a malformed one is refused."""
    if address and address.strip():
        text, origin = address.strip(), "--address"
    elif os.environ.get(ADDRESS_ENV, "").strip():
        text, origin = os.environ[ADDRESS_ENV].strip(), f"${ADDRESS_ENV}"
    else:
        return RayAddress(LOCAL, "default")
    if text in (LOCAL, AUTO):
        return RayAddress(text, origin)
    host, sep, port = text.removeprefix(CLIENT_SCHEME).rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 host is written [::1]:6379
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{origin} {text!r} is not a Ray address; give {ADDRESS_FORMS}")
    return RayAddress(text, origin, host, int(port))


def check_reachable(address: RayAddress) -> None:
    """A TCP connect to host:port: an address nobody listens on fails here in seconds, where
    ray.init would retry for minutes."""
    if address.host is None:
        return
    try:
        with socket.create_connection((address.host, address.port), timeout=REACH_TIMEOUT_S):
            pass
    except socket.gaierror:
        reason = f"unknown host {address.host!r}"
    except TimeoutError:
        reason = f"no answer within {REACH_TIMEOUT_S:g} s"
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
    else:
        return
    raise UserError(f"cannot reach Ray at {address}: {reason}; start the cluster (`ray start --head`) "
                    f"or point --address or ${ADDRESS_ENV} at a running one")


@contextmanager
def connect_limits() -> Iterator[None]:
    """CONNECT_LIMITS in the environment for the duration, then the environment as it was, so
    processes Ray starts later (a local instance, its workers) keep Ray's own limits."""
    added = {k: v for k, v in CONNECT_LIMITS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextmanager
def stderr_held_back() -> Iterator[None]:
    """Ray's C++ core writes each failed connection attempt straight to file descriptor 2: held
    back, so a failure is the one line that says what to do; replayed if the connection works."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        connected = False
        try:
            yield
            connected = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if connected:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def require_ray(address: RayAddress | None = None):
    """The ray module, or the one-line error that says how to get it (checked before the store is written).
    Give the address where it is known: a private instance needs a setting in place before Ray's first import."""
    if address is not None and address.starts_instance:
        ray_private.before_import()
    try:
        with connect_limits():  # Ray's core reads part of its limits when first imported
            import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def worker_runtime_env() -> dict:
    """What every task's worker gets: this package's code, the data root, the commit it came from."""
    env = {DATA_ROOT_ENV: str(resolve_data_root(None).resolve())}  # ./data means the driver's
    if commit := git_commit():
        env[COMMIT_ENV] = commit
    return {"py_modules": [str(Path(ablations.__file__).resolve().parent)], "excludes": SHIP_EXCLUDES,
            "env_vars": env}


def for_workers(config: dict) -> dict:
    """A run's config as a worker elsewhere needs it: a relative --data-root is the driver's."""
    if not config.get("data_root"):
        return config
    return {**config, "data_root": str(resolve_data_root(config["data_root"]).resolve())}


def connect(address: str | None, *, cpus_per_run: float):
    """Start or join Ray once per process and return the ray module; a caller's own connection is used as it is."""
    global _connected_here
    where = resolve_address(address)
    ray = require_ray(where)
    if ray.is_initialized():
        return ray
    check_reachable(where)  # a cluster that is not there fails before anything slow
    runtime_env = worker_runtime_env()
    if where.starts_instance:  # enough CPUs that one run fits even when it asks for more than the machine has
        ray_private.start(ray, num_cpus=max(os.cpu_count() or 1, math.ceil(cpus_per_run)), runtime_env=runtime_env)
    else:
        try:
            with connect_limits(), stderr_held_back():
                ray.init(address=where.text, runtime_env=runtime_env, logging_level="ERROR")
        # AuthenticationError came with Ray's token auth; older releases fail as ConnectionError
        except (ConnectionError, RuntimeError, ValueError, TimeoutError,
                getattr(ray.exceptions, "AuthenticationError", ConnectionError)) as err:
            if refused_for_a_token(err):
                raise UserError(f"the Ray cluster at {where} asks for a token: {TOKEN_HINT}") from None
            raise UserError(f"cannot connect to Ray at {where}: {first_sentence(err)}; {connect_hint(where)}") from None
    _connected_here = True
    return ray


def refused_for_a_token(err: BaseException) -> bool:
    """Ray wraps its authentication error in a connection error whose text holds the first one's traceback."""
    chain = [err]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    return any("AuthenticationError" in f"{type(e).__name__} {e}" or "InvalidAuthToken" in str(e) for e in chain)


def first_sentence(err: Exception) -> str:
    """Ray's connection errors run to tracebacks and advice for its own CLI; the first sentence says what failed."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0].rstrip(".")


def connect_hint(where: RayAddress) -> str:
    if where.text == AUTO:
        return f"start one here with `ray start --head`, or give --address or ${ADDRESS_ENV}"
    if where.text.startswith(CLIENT_SCHEME):  # Ray Client reports a refused token as a timeout
        return ("check that the head runs, that this is its Ray Client port (10001 by default) and, if the cluster "
                "uses token authentication, that RAY_AUTH_MODE=token is set here")
    return "check that the head runs and that this is its GCS port (6379 by default; ray:// for the client port)"


def disconnect() -> None:
    """Leave Ray if connect() joined it (a private instance stops with it)."""
    global _connected_here
    if _connected_here:
        import ray

        ray.shutdown()
        ray_private.stop()  # a no-op after joining a cluster
        _connected_here = False
