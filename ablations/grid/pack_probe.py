"""How many runs to pack on this machine (`--pack auto`), and how much of a grid fits a time budget (`--fit-seconds`).

The probe times the train step of the grid's own setup (model, input size, batch, precision, memory format)
on the device the runs will use: unpacked (K=1, the run loop's own `train_step`) and packed at a few K, in
interleaved rounds so every K sees the same load on a shared machine. Each K's figure is member images per
second (K x batch over the median step). It picks the fastest, but a pack must beat one model by MARGIN:
packed runs end together and fail together, which a gain inside the probe's noise does not pay for.
Measured on a 2-core AVX2 EPYC (fp32, 28 px, batch 64): K=4 0.75x, K=8 0.68x of one model, so CPUs pick 1;
on GPUs a small ResNet is launch-bound and packing fills the device. Steps are eager (no torch.compile).

Results are cached per machine and setup (ABLATIONS_CACHE_DIR, else ~/.cache/ablations/pack_probe.json),
so a grid run again, or a second grid of the same setup, does not probe again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ablations.config import TrainConfig

CANDIDATES = {"cuda": (1, 2, 4, 8, 16), "cpu": (1, 2, 4)}  # fewer on a CPU: each packed step is seconds there
MARGIN = 1.10  # a pack must give 10% more member images per second than one model
ROUNDS = 3  # timed steps per K, interleaved, after the warm-up
WARMUP_STEPS = {"cuda": 2, "cpu": 1}  # cuDNN's benchmark mode autotunes on the first call of a shape
# The probe times steps on one batch; data order, augmentation and the epoch's evaluation add to a real run.
EVAL_COST = 1 / 3  # an evaluated image costs about a third of a trained one (forward only)
HEADROOM = 1.2  # a budget is met by the prediction times this
CACHE_ENV = "ABLATIONS_CACHE_DIR"


@dataclass(frozen=True)
class Probe:
    rates: dict[int, float]  # K -> member images per second
    setup: str  # what was timed, where
    measured_at: str
    cached: bool = False

    @property
    def chosen(self) -> int:
        best = max(self.rates, key=self.rates.get)
        return best if best == 1 or 1 not in self.rates or self.rates[best] >= MARGIN * self.rates[1] else 1

    def line(self) -> str:
        one = self.rates.get(1)
        figures = ", ".join(f"K={k} {rate:,.0f}" + (f" ({rate / one:.2f}x)" if one and k != 1 else "")
                            for k, rate in sorted(self.rates.items()))
        when = f"cached from {self.measured_at}" if self.cached else "measured now"
        return (f"pack auto: {self.chosen} run(s) per pack; member images/s {figures} on {self.setup}; a pack must beat "
                f"one model by {MARGIN - 1:.0%} ({when})")


def probe(cfg: TrainConfig, ks: tuple[int, ...], *, threads: int | None = None) -> Probe:
    """Member images per second of `cfg`'s train step at each K in `ks`, from the cache or measured now."""
    import torch  # a probe times steps: torch loads only once one is asked for

    from ablations.run.devices import device_name, resolve_device, resolve_precision

    device = resolve_device(cfg.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)  # the threads each worker process will train with
    try:
        size = cfg.input_size(native_size=0)  # 0: the size follows the dataset's
        setup = (f"{device_name(device)}, {cfg.model} at {f'{size} px' if size else 'native size'} on {cfg.dataset}, "
                 f"batch {cfg.batch_size}, "
                 f"{resolve_precision(cfg.precision, device.type)}, {'channels_last' if cfg.channels_last else 'NCHW'}")
        key = json.dumps({"host": socket.gethostname(), "setup": setup, "torch": torch.__version__, "ks": ks})
        cache = _read_cache()
        if key in cache:
            return Probe({int(k): v for k, v in cache[key]["rates"].items()}, setup, cache[key]["measured_at"], True)
        found = Probe(measure(cfg, ks), setup, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    finally:
        torch.set_num_threads(before)
    _write_cache({**cache, key: {"rates": found.rates, "measured_at": found.measured_at}})
    return found


def measure(cfg: TrainConfig, ks: tuple[int, ...]) -> dict[int, float]:
    """Interleaved rounds: every K takes one step per round, each timed alone; K -> K x batch / median seconds."""
    import torch  # as in probe(), the run layer and torch load only here

    from ablations.run.build import build_run
    from ablations.run.devices import resolve_device, synchronize
    from ablations.run.execute import cached_dataset, data_key
    from ablations.run.loop import train_step
    from ablations.run.packed_loop import build_pack
    from ablations.run.packed_loop import train_step as packed_step

    device = resolve_device(cfg.device)
    cfg = dataclasses.replace(cfg, compile=False)
    data = cached_dataset(*data_key(cfg), str(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() runs
    steps = {}
    batch = torch.arange(cfg.batch_size, device=device)
    for k in ks:
        if k == 1:
            run = build_run(cfg, data)
            x, y = run.batch(batch)
            steps[k] = lambda run=run, x=x, y=y: train_step(run, x, y)
        else:
            pack = build_pack([dataclasses.replace(cfg, seed=seed) for seed in range(k)], data)
            xk, yk = pack.batch(batch.expand(k, -1))
            lr = torch.full((k,), cfg.lr, device=device)
            steps[k] = lambda pack=pack, xk=xk, yk=yk, lr=lr: packed_step(pack, xk, yk, lr)
    for step in steps.values():
        for _ in range(WARMUP_STEPS.get(device.type, 1)):
            step()
    seconds: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(ROUNDS):
        for k, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            seconds[k].append(time.perf_counter() - start)
    cached_dataset.cache_clear()  # the runs load onto their own device
    return {k: k * cfg.batch_size / statistics.median(s) for k, s in seconds.items()}


def candidates(device_type: str, largest_group: int) -> tuple[int, ...]:
    """The K a probe times: 1 and the device's candidates up to the most runs that could share a pack."""
    return tuple(k for k in CANDIDATES.get(device_type, CANDIDATES["cpu"]) if k <= max(1, largest_group))


def seconds_per_seed(configs: list[TrainConfig], rate: float, split_sizes: dict[str, int]) -> dict[int, float]:
    """Predicted seconds to train each seed's runs at `rate` member images/s, evaluation included, with headroom."""
    per_seed: dict[int, float] = {}
    for cfg in configs:
        steps = split_sizes["train"] // cfg.batch_size
        images = cfg.epochs * (steps * cfg.batch_size + EVAL_COST * split_sizes["val"]) + EVAL_COST * split_sizes["test"]
        per_seed[cfg.seed] = per_seed.get(cfg.seed, 0.0) + HEADROOM * images / rate
    return per_seed


def seeds_that_fit(configs: list[TrainConfig], seeds: list[int], rate: float, split_sizes: dict[str, int],
                   budget_s: float) -> tuple[list[int], float]:
    """The longest prefix of `seeds` (seed-major: whole replicates) predicted to finish in `budget_s`, and its
    predicted seconds."""
    per_seed = seconds_per_seed(configs, rate, split_sizes)
    fitting, total = [], 0.0
    for seed in seeds:
        if total + per_seed.get(seed, 0.0) > budget_s:
            break
        fitting.append(seed)
        total += per_seed.get(seed, 0.0)
    return fitting, total


def cache_path() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ablations"
    return Path(root) / "pack_probe.json"


def _read_cache() -> dict:
    try:
        cache = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache: dict) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        partial.replace(path)  # atomic: two grids probing at once leave one whole file
    except OSError:
        pass  # a read-only home: the next grid probes again
