"""Executors of grid runs: in this process, in N local worker processes, or as Ray tasks.

Every executor has `submit(config_dicts, track=None, stops=None, checkpoint=None) ->
concurrent.futures.Future[list of result dicts]` (one run, or a pack of runs trained as one model:
`train_configs`), `stop(future)` and `shutdown(cancel)`, so the driver loop in `ablations.grid.driver` is
the same for all three, and only the driver writes the store. A run stops when its own file in `stops`
appears (looked for after each epoch, on this machine; the other runs of its pack train on) or, on Ray,
when `stop` cancels its task. `checkpoints` says whether the runs can reach a checkpoint file on this
machine (`ablations.run.checkpoint`): a run stopped there resumes at its last saved epoch.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from ablations.config import TrainConfig, check_name, count_or_auto
from ablations.errors import UserError
from ablations.grid.ray_cluster import connect, disconnect, for_workers
from ablations.run.devices import resolve_device

BACKENDS = ("local", "ray")
# How often a worker's watchdog looks for its driver: a dead driver's workers are gone within this.
PARENT_POLL_S = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class RunStopped(Exception):
    """The driver lost this run's claim: training it further would race the runner that took it."""


def train_configs(configs: list[dict], track=None, stops: list[str | None] | None = None,
                  checkpoint: str | None = None, progress: Callable[[str, int], None] | None = None) -> list[dict]:
    """Train one run, or a pack of runs as one model, where the executor put it (this process, a worker
    process, a Ray task) through the one `run_pack`, logging each run's epochs to `track` (a
    tracking.TrackSpec) if given; their results as the driver stores them, in order. With `stops` (a file
    per run), a run ends after any epoch once its file exists (its result is then dropped); the other runs
    of its pack train on. A run trained alone resumes from and saves to `checkpoint` (a file) if given.
    `progress(run_id, epoch)` hears of each finished epoch (a worker process sends it to its driver instead)."""
    from ablations.tracking.live import tracked_pack  # torch loads in the process that trains

    stops = stops or [None] * len(configs)
    cfgs = [TrainConfig.from_mapping(config) for config in configs]

    def after_epoch(k: int, metrics: dict) -> None:
        (progress or report_progress)(cfgs[k].run_id, metrics["epoch"])
        if stops[k] and os.path.exists(stops[k]):  # one stat per run and epoch
            raise RunStopped(f"stopped after epoch {metrics['epoch']}: this runner lost the run's claim")

    return [result.to_dict() for result in tracked_pack(cfgs, track, on_epoch=after_epoch, checkpoint=checkpoint)]


# A worker process's channel to its driver, set when the worker starts: (run id, epoch) after each epoch,
# for the progress bar. None in the driver's own process and in a Ray task.
_progress_queue = None


def report_progress(run_id: str, epoch: int) -> None:
    if _progress_queue is not None:
        with contextlib.suppress(Exception):  # progress is display only: it never stops a run
            _progress_queue.put_nowait((run_id, epoch))


def no_progress(run_id: str, epoch: int) -> None:
    pass


def preflight(configs: list[TrainConfig]) -> None:
    """Fail before anything is stored if a run cannot start: `build_run` without training, on
    the CPU, once per distinct setup (a missing dataset, a model that cannot take its input, a
    batch larger than the training set, a device that is not there)."""
    # torch loads here, for a grid that will train, not for --help, a dry run or the API's import
    from ablations.run.build import build_run
    from ablations.run.execute import cached_dataset, data_key

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
    count = count_or_auto(workers, "--workers")
    if count != "auto":
        return count
    if backend == "ray":
        return 0
    on_cpu = all(resolve_device(c.device).type == "cpu" for c in configs)
    return max(1, min(os.cpu_count() or 1, len(configs))) if on_cpu else 1


class InlineExecutor:
    """Runs each submission at once, in this process: the default, and the easiest to debug."""

    workers = 1
    checkpoints = True  # the runs train on this machine: a checkpoint file beside the store reaches them

    def __init__(self, on_progress: Callable[[str, int], None] | None = None) -> None:
        self._on_progress = on_progress or no_progress  # called as each epoch ends, from this thread

    def submit(self, configs: list[dict], track=None, stops: list[str | None] | None = None,
               checkpoint: str | None = None) -> Future:
        future: Future = Future()
        future.set_result(train_configs(configs, track, stops, checkpoint, self._on_progress))
        return future

    def stop(self, future: Future) -> None:
        pass  # the run has ended by the time the driver holds its future

    def shutdown(self, cancel: bool = False) -> None:
        pass


# How many runs train at once beside this one on the same device: stored with each run, so a
# throughput measured while runs shared a device is labelled as shared.
CONCURRENT_RUNS_ENV = "ABLATIONS_CONCURRENT_RUNS"
# Runs per GPU when Ray is given GPUs but no --gpus-per-run: small ResNets leave an H200 idle alone.
RUNS_PER_GPU = 4


def _init_worker(threads: int, parent_pid: int, workers: int, progress_queue=None) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    if progress_queue is not None:
        progress_queue.cancel_join_thread()  # a worker's exit never waits to flush progress nobody may read
    die_with_parent(parent_pid)
    os.environ[CONCURRENT_RUNS_ENV] = str(workers)
    import torch

    torch.set_num_threads(threads)


def ray_gpu_share(requested: float | None, cluster_gpus: float, configs_device: str) -> float:
    """GPUs per Ray task. Ray hides every GPU from a task that asks for none, so on a cluster with
    GPUs a run meant for one would silently train on the CPU: unset gives each run a 1/4 share,
    and an explicit 0 there is refused unless the runs are pinned to the CPU."""
    if requested is None:
        return 1.0 / RUNS_PER_GPU if cluster_gpus > 0 and configs_device != "cpu" else 0.0
    if requested == 0 and cluster_gpus > 0 and configs_device != "cpu":
        raise UserError(f"--gpus-per-run 0 on a Ray cluster with {cluster_gpus:g} GPU(s) would train every run on a "
                        "CPU (Ray hides GPUs from tasks that ask for none); give a share such as 0.25, "
                        "or --device cpu")
    if requested < 0:
        raise UserError(f"--gpus-per-run must be 0 or more, got {requested:g}")
    return requested


def pack_gpu_share(gpus_per_run: float, runs: int) -> float:
    """GPUs a Ray task training `runs` runs as one pack reserves: min(1, runs x the share per run)."""
    return min(1.0, gpus_per_run * runs)


def die_with_parent(parent_pid: int) -> None:
    """End this worker when the driver that started it dies, even by SIGKILL (no cleanup runs there).

    Linux: the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG). Elsewhere, and
    as a second line, a daemon thread polls the parent pid. Without this, a killed driver leaves
    its workers training runs whose results nobody will record. The kernel ties the signal to the
    thread that started the worker: the pool starts workers in submit(), on the driver's main thread,
    which lives as long as the driver. The multiprocessing resource tracker needs nothing: it exits
    when the last holder of its pipe (the driver and these workers) is gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a failure leaves the watchdog below
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()


def _watch_parent(parent_pid: int) -> None:
    # An orphan is re-parented (to init or a subreaper), so a changed ppid means the driver is gone.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def threads_per_worker(workers: int) -> int:
    """torch threads per worker process: the cores split so N workers do not oversubscribe them (torch
    uses all by default)."""
    return max(1, (os.cpu_count() or 1) // workers)


class ProcessExecutor:
    """N worker processes (spawned, so CUDA is safe); several may share one GPU."""

    checkpoints = True  # the workers run on this machine: a checkpoint file beside the store reaches them

    def __init__(self, workers: int, on_progress: Callable[[str, int], None] | None = None) -> None:
        self.workers = workers
        self.threads = threads_per_worker(workers)
        self._context = multiprocessing.get_context("spawn")
        # The workers' epochs, handed to each worker as it starts (a queue cannot be pickled later) and
        # read by a thread here that calls on_progress; without a listener the workers send nothing.
        self._progress = self._context.Queue() if on_progress else None
        if on_progress:
            threading.Thread(target=self._relay, args=(self._progress, on_progress), daemon=True,
                             name="worker-progress").start()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(self.threads, os.getpid(), self.workers, self._progress),
        )

    @staticmethod
    def _relay(progress, on_progress: Callable[[str, int], None]) -> None:
        while True:
            try:
                item = progress.get()
            except (OSError, EOFError, ValueError):  # the queue is gone: the grid is ending
                return
            if item is None:  # shutdown's sentinel
                return
            with contextlib.suppress(Exception):  # progress is display only: it never stops the grid
                on_progress(*item)

    def submit(self, configs: list[dict], track=None, stops: list[str | None] | None = None,
               checkpoint: str | None = None) -> Future:
        with callers_main_hidden():  # the pool starts its workers inside submit
            try:
                return self._pool.submit(train_configs, configs, track, stops, checkpoint)
            except BrokenProcessPool:  # a worker died (OOM kill, segfault): start a fresh pool
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(train_configs, configs, track, stops, checkpoint)

    def stop(self, future: Future) -> None:
        future.cancel()  # not started yet: never starts; started: its worker sees the stop file

    def shutdown(self, cancel: bool = False) -> None:
        if self._progress is not None:
            self._progress.cancel_join_thread()  # exiting never waits on it
            self._progress.put_nowait(None)  # ends the relay thread
        if cancel:
            # A started run would otherwise train to its end (minutes, hours) before this process can exit,
            # racing the runner that claims it next. Its claim is handed back and its checkpoint keeps what
            # it had done, so its worker is ended now. (Python 3.14 has terminate_workers() for this.)
            for process in list((self._pool._processes or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


@contextmanager
def callers_main_hidden() -> Iterator[None]:
    """Start spawned workers without the caller's __main__. A spawned process first re-runs the
    parent's main script or module, as multiprocessing does for everything it spawns; the workers
    need only this package, and re-running a user's script would run its grid again in every
    worker (or fail outright for a script read from stdin). A main without __file__ and __spec__
    is what an interactive session has, and multiprocessing leaves that alone."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def prepare_ray(*, address: str | None, cpus_per_run: float, gpus_per_run: float | None,
                device: str = "auto") -> float:
    """Start or join Ray (once per process) and return each run's GPU share. The grid calls it
    while validating, so a bad address, a cluster that does not answer or a refused share is one
    line before any store exists."""
    ray = connect(address, cpus_per_run=cpus_per_run)
    return ray_gpu_share(gpus_per_run, ray.cluster_resources().get("GPU", 0), device)


class RayExecutor:
    """Each run, or pack of runs, is a Ray task (CPUs/GPUs per run as asked; a pack of K runs asks for K
    runs' GPU share, at most one GPU); a task whose worker died is retried."""

    def __init__(self, *, address: str | None, workers: int, cpus_per_run: float, gpus_per_run: float | None,
                 device: str = "auto") -> None:
        gpus_per_run = prepare_ray(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                                   device=device)
        import ray

        self._ray = ray
        # On a cluster as on a private instance, each task reserves its share; Ray schedules by them.
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=2)(train_configs)
        self._gpus_per_run = gpus_per_run
        # workers 0: as many runs at once as the cluster's CPUs (or GPUs) allow
        fit = ray.cluster_resources().get("CPU", 1) // max(cpus_per_run, 1e-9)
        if gpus_per_run:
            fit = min(fit, ray.cluster_resources().get("GPU", 0) // gpus_per_run)
        self.workers = workers if workers > 0 else max(1, int(fit))
        self._refs: dict[Future, object] = {}

    checkpoints = False  # a task on another node cannot reach a file beside the store: its runs start over

    def submit(self, configs: list[dict], track=None, stops: list[str | None] | None = None,
               checkpoint: str | None = None) -> Future:
        # The stop files are on this machine; a task on another node is stopped by cancelling it.
        # A pack is one task on one device: its runs' GPU shares together, at most the whole GPU.
        remote = self._remote if len(configs) == 1 else self._remote.options(
            num_gpus=pack_gpu_share(self._gpus_per_run, len(configs)))
        ref = remote.remote([for_workers(config) for config in configs], track)
        future = ref.future()
        self._refs[future] = ref
        return future

    def stop(self, future: Future) -> None:
        self._ray.cancel(self._refs[future], force=True)  # a cancelled task is not retried

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs.values():
                self._ray.cancel(ref, force=True)
        disconnect()


def check_backend(backend: str) -> None:
    check_name("backend", backend, BACKENDS)


def make_executor(backend: str, *, workers: int, address: str | None, cpus_per_run: float,
                  gpus_per_run: float | None, device: str = "auto",
                  on_progress: Callable[[str, int], None] | None = None):
    """The executor of `backend`; `on_progress(run_id, epoch)` hears of each epoch that ends here (local
    runs; a Ray task reports only its result)."""
    check_backend(backend)
    if backend == "ray":
        return RayExecutor(address=address, workers=workers, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                           device=device)
    return InlineExecutor(on_progress) if workers == 1 else ProcessExecutor(workers, on_progress)
