"""`--pack K|auto`: which runs of a grid train as one model (ablations.run.packed_loop), and how many at once.

Runs that share every setting but seed, augmentation, weight decay and schedule (`TrainConfig.pack_key`) are packed,
at most K to a pack and as evenly as K allows (24 runs at K=16 are two packs of 12, not 16 + 8: a pack
takes as long as its largest member count). Packs keep the queue's order, so a seed-major grid stays
seed-major and a grid cut short still holds whole replicates. Models other than the notebook's ResNets
(torchvision:, timm:) train unpacked. `auto` measures (ablations.grid.pack_probe) and is cached per machine.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass

from ablations.config import PACKABLE_MODELS, TrainConfig, count_or_auto
from ablations.errors import UserError
from ablations.grid.executors import threads_per_worker
from ablations.grid.pack_probe import candidates, probe, seeds_that_fit
from ablations.run.devices import resolve_device

AUTO = "auto"


def parse_pack(value: str | int) -> int | str:
    """--pack: a count of runs per pack (1: unpacked) or 'auto'."""
    return count_or_auto(value, "--pack")


def packable(cfg: TrainConfig) -> bool:
    return cfg.model in PACKABLE_MODELS


def groups(configs: list[TrainConfig]) -> list[list[TrainConfig]]:
    """Runs that may share a pack, in queue order; an unpackable run is a group of its own."""
    by_key: dict[str, list[TrainConfig]] = defaultdict(list)
    alone: list[list[TrainConfig]] = []
    for cfg in configs:
        if packable(cfg):
            by_key[cfg.pack_key].append(cfg)
        else:
            alone.append([cfg])
    return [*by_key.values(), *alone]


def make_packs(configs: list[TrainConfig], k: int) -> list[list[TrainConfig]]:
    """The runs in packs of at most k, as evenly sized as k allows, ordered by their first run's place in `configs`."""
    position = {cfg.run_id: i for i, cfg in enumerate(configs)}
    packs: list[list[TrainConfig]] = []
    for group in groups(configs) if k > 1 else [[cfg] for cfg in configs]:
        count = math.ceil(len(group) / k)
        sizes = [len(group) // count + (i < len(group) % count) for i in range(count)]
        starts = [sum(sizes[:i]) for i in range(count)]
        packs += [group[start : start + size] for start, size in zip(starts, sizes, strict=True)]
    return sorted(packs, key=lambda pack: position[pack[0].run_id])


def unpacked_line(configs: list[TrainConfig]) -> str | None:
    """The one line that says which runs train unpacked because their model cannot be packed."""
    models = sorted({cfg.model for cfg in configs if not packable(cfg)})
    if not models:
        return None
    count = sum(not packable(cfg) for cfg in configs)
    return (f"pack: {count} run(s) of {', '.join(models)} train unpacked: only {', '.join(PACKABLE_MODELS)} "
            "can be packed")


def largest_group(configs: list[TrainConfig]) -> list[TrainConfig]:
    """The packable runs that could share the most packs: the setup a probe times."""
    packable_groups = [g for g in groups(configs) if packable(g[0])]
    return max(packable_groups, key=len) if packable_groups else []


def threads_per_run(workers: int, device_type: str) -> int | None:
    """torch threads each worker process trains with (`ProcessExecutor`), so a probe measures in the
    conditions the runs will have; None: this process's own count (one worker, or a GPU)."""
    if workers <= 1 or device_type != "cpu":
        return None
    return threads_per_worker(workers)


@dataclass(frozen=True)
class Packing:
    """What `--pack` and `--fit-seconds` decided for a grid, and the lines that say so."""

    size: int  # runs per pack; 1 = unpacked
    seeds: tuple[int, ...] | None  # the seeds that fit the budget; None = every seed of the grid
    lines: tuple[str, ...]


def decide(value: str | int, configs: list[TrainConfig], seeds: tuple[int, ...], *, workers: int,
           fit_seconds: float | None = None, started: float | None = None) -> Packing:
    """Resolve --pack (auto: the probe's pick) and, with a budget in seconds from `started` (time.monotonic();
    default now), the complete seeds (seed-major) the probe predicts to finish within what is left of it at
    that pack size. Probes only when auto or a budget asks for it."""
    started = time.monotonic() if started is None else started
    size = parse_pack(value)
    note = unpacked_line(configs)
    lines = [note] if note and size != 1 else []
    if size == 1 and fit_seconds is None:
        return Packing(1, None, ())
    group = largest_group(configs)
    lead = group[0] if group else configs[0]  # an unpackable model is still timed, unpacked, for a budget
    device_type = resolve_device(lead.device).type
    ks = candidates(device_type, len(group)) if size == AUTO else (min(size, max(1, len(group))),)
    found = probe(lead, ks, threads=threads_per_run(workers, device_type))
    if size == AUTO:
        size = found.chosen
        lines.append(found.line())
    if fit_seconds is None:
        return Packing(size, None, tuple(lines))
    rate = found.rates[min(size, max(ks))]
    sizes = split_sizes(lead)
    left = fit_seconds - (time.monotonic() - started)  # the probe and the data's first read came out of it
    fitting, predicted = seeds_that_fit(configs, list(seeds), rate, sizes, left)
    if not fitting:
        one = seeds_that_fit(configs, list(seeds[:1]), rate, sizes, float("inf"))[1]
        raise UserError(f"not even one seed of this grid fits --fit-seconds {fit_seconds:g} ({max(left, 0):,.0f} s "
                        f"left after the probe): seed {seeds[0]} is predicted to take {one:,.0f} s at {rate:,.0f} "
                        f"member images/s ({size} per pack); give more seconds, or fewer epochs or runs")
    lines.append(f"fit: {len(fitting)} of {len(seeds)} seed(s) ({', '.join(map(str, fitting))}) predicted to take "
                 f"{predicted:,.0f} s of the {left:,.0f} s left of {fit_seconds:g} s, at {rate:,.0f} member images/s")
    return Packing(size, tuple(fitting), tuple(lines))


def split_sizes(cfg: TrainConfig) -> dict[str, int]:
    """Images in the train, val and test splits of `cfg`'s data (read on the CPU; every run of a grid shares them)."""
    from ablations.run.execute import cached_dataset, data_key  # torch: only once a budget is asked for

    data = cached_dataset(*data_key(cfg), "cpu")
    return {split: len(data.split(split)[1]) for split in ("train", "val", "test")}
