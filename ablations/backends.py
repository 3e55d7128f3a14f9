"""Executors of grid runs: in this process, in N local worker processes, or as Ray tasks.

Every executor has `submit(config_dict) -> concurrent.futures.Future[result dict]` and
`shutdown(cancel)`, so the driver loop in `ablations.execute` is the same for all three, and
only the driver writes the store.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ablations.config import Status, TrainConfig
from ablations.errors import UserError

BACKENDS = ("local", "ray")


def run_one(config: dict) -> dict:
    """Train one run; a run that raises comes back as status 'failed' with its error."""
    from ablations.devices import resolve_device
    from ablations.provenance import provenance
    from ablations.trainer import train

    cfg = TrainConfig.from_mapping(config)
    device = resolve_device(cfg.device)
    precision = None
    try:
        result = train(cfg, cached_dataset(*data_key(cfg), str(device))).to_dict()
        precision = result["precision"]
    except Exception as err:  # recorded in the store; the grid goes on
        last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        where = f" (at {os.path.basename(last.filename)}:{last.lineno})" if last else ""
        result = {"status": Status.FAILED, "error": f"{type(err).__name__}: {err}{where}", "epochs": []}
    result["provenance"] = provenance(device, precision)
    return result


def data_key(cfg: TrainConfig) -> tuple:
    """The settings that decide a run's dataset tensors."""
    return cfg.dataset, cfg.data_root, cfg.train_subset, cfg.val_subset, cfg.test_subset


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, data_root: str | None, train_subset: int | None, val_subset: int | None,
                   test_subset: int | None, device: str):
    """Runs of one grid share their dataset: read it once per process, not once per run."""
    from ablations.data import load_dataset

    return load_dataset(name, data_root=data_root, train_subset=train_subset, val_subset=val_subset,
                        test_subset=test_subset, device=device)


def preflight(configs: list[TrainConfig]) -> None:
    """Fail before anything is stored if a run cannot start: `build_run` without training, on
    the CPU, once per distinct setup (a missing dataset, a model that cannot take its input, a
    batch larger than the training set, a device that is not there)."""
    from ablations.devices import resolve_device
    from ablations.trainer import build_run

    checked = set()
    for cfg in configs:
        resolve_device(cfg.device)
        key = (*data_key(cfg), cfg.model, cfg.image_size, cfg.augment, cfg.batch_size, cfg.epochs, cfg.schedule,
               cfg.milestones, cfg.warmup_epochs)
        if key in checked:
            continue
        checked.add(key)
        build_run(dataclasses.replace(cfg, device="cpu", compile=False), cached_dataset(*data_key(cfg), "cpu"))
    cached_dataset.cache_clear()  # the runs load onto their own device


def resolve_workers(workers: str, backend: str, configs: list[TrainConfig]) -> int:
    """auto: on CPU one single-threaded run per core (small convolutions scale better across
    processes than across threads: 2 x 1 thread gave 1.36x the images/s of 1 x 2 threads on a
    2-core Xeon with AMX, bf16, 28 px, and 1.17x on a 2-core EPYC); on a GPU one run; on Ray
    as many as the cluster's resources allow (0 = ask Ray)."""
    if workers != "auto":
        try:
            count = int(workers)
        except ValueError:
            raise UserError(f"--workers must be a number or auto, got {workers!r}") from None
        if count < 1:
            raise UserError(f"--workers must be 1 or more, got {count}")
        return count
    if backend == "ray":
        return 0
    from ablations.devices import resolve_device

    on_cpu = all(resolve_device(c.device).type == "cpu" for c in configs)
    return max(1, min(os.cpu_count() or 1, len(configs))) if on_cpu else 1


class InlineExecutor:
    """Runs each submission at once, in this process: the default, and the easiest to debug."""

    workers = 1

    def submit(self, config: dict) -> Future:
        future: Future = Future()
        future.set_result(run_one(config))
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor:
    """N worker processes (spawned, so CUDA is safe); several may share one GPU."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # Split the cores so N workers do not oversubscribe them (torch uses all by default).
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads,),
        )

    def submit(self, config: dict) -> Future:
        try:
            return self._pool.submit(run_one, config)
        except BrokenProcessPool:  # a worker died (OOM kill, segfault): start a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(run_one, config)

    def shutdown(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayExecutor:
    """Each run is a Ray task (CPUs/GPUs per run as asked); a task whose worker died is retried."""

    def __init__(self, *, address: str | None, workers: int, cpus_per_run: float, gpus_per_run: float) -> None:
        try:
            import ray
        except ImportError:
            raise UserError('the ray backend needs Ray: pip install -e ".[ray]"') from None
        self._ray = ray
        env = {k: os.environ[k] for k in ("ABLATIONS_DATA_ROOT",) if k in os.environ}
        self._started_here = not ray.is_initialized()
        if self._started_here:
            # No address: a private instance on loopback, gone when the grid ends.
            init = (
                {"address": address}
                if address
                else {"num_cpus": max(os.cpu_count() or 1, int(cpus_per_run)), "_node_ip_address": "127.0.0.1"}
            )
            ray.init(**init, include_dashboard=False, runtime_env={"env_vars": env}, logging_level="ERROR")
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=2)(run_one)
        # workers 0: as many runs at once as the cluster's CPUs (or GPUs) allow
        fit = ray.cluster_resources().get("CPU", 1) // max(cpus_per_run, 1e-9)
        if gpus_per_run:
            fit = min(fit, ray.cluster_resources().get("GPU", 0) // gpus_per_run)
        self.workers = workers if workers > 0 else max(1, int(fit))
        self._refs: list = []

    def submit(self, config: dict) -> Future:
        ref = self._remote.remote(config)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                self._ray.cancel(ref, force=True)
        if self._started_here:
            self._ray.shutdown()


def make_executor(backend: str, *, workers: int, address: str | None, cpus_per_run: float, gpus_per_run: float):
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "ray":
        return RayExecutor(address=address, workers=workers, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    return InlineExecutor() if workers == 1 else ProcessExecutor(workers)
