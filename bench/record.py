"""What each benchmark saves in extra_info, and the ratios within its group.

extra_info keys, read by the report (keep them): suite, variant, role, images_per_s (from the
median call), batch_size, img_size, param_count (None where no model runs), num_threads,
precision ("fp32"/"bf16") and dtype ("float32"/"bfloat16"), memory_format, device, device_name,
peak_memory_bytes, rounds; for model work also flops_per_image and macs_per_image (FLOPs are
2 x MACs, see flops_convention), achieved_flops_per_s, peak_flops_per_s (of the precision
used) and utilization; the epoch suite's bare step also kernel_ceiling, kernel_share_of_step
and matrix_ops_per_step (bench.kernel_ceiling); the packed suite's members, unpacked_images_per_s and
speedup_vs_unpacked (its unpacked step timed in the same rounds, bench/test_packed.py). `Registry` adds the within-group ratios speedup_vs_notebook,
fraction_of_bare_step and data_pipeline_overhead.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from ablations.run.devices import device_name
from bench.measure import Timing
from bench.peaks import FLOPS_CONVENTION
from bench.runs import PEAK_DTYPE

BASELINE, CANDIDATE = "baseline", "candidate"
BARE_STEP = "bare step"
RATIOS_SHOWN = ("speedup_vs_notebook", "speedup_vs_unpacked", "fraction_of_bare_step", "utilization", "kernel_ceiling")


def record(
    benchmark,
    registry: Registry,
    *,
    suite: str,
    variant: str,
    role: str,
    timing: Timing,
    batch_size: int,
    img_size: int,
    device: torch.device,
    precision: str = "fp32",
    memory_format: str = "contiguous",
    param_count: int | None = None,
    flops_per_image: float | None = None,
    peak_flops_per_s: float | None = None,
    **extra,
) -> dict:
    """Fill benchmark.extra_info with the report's keys and enter it in the group's ratios."""
    assert role in (BASELINE, CANDIDATE) and benchmark.group, "set benchmark.group before record()"
    info = benchmark.extra_info
    info.update(
        suite=suite, variant=variant, role=role, images_per_s=timing.images_per_s, median_s=timing.seconds,
        batch_size=batch_size, img_size=img_size, param_count=param_count, num_threads=timing.num_threads,
        precision=precision, dtype=PEAK_DTYPE[precision], memory_format=memory_format, device=str(device),
        device_name=device_name(device), peak_memory_bytes=timing.peak_memory_bytes, rounds=timing.rounds, **extra,
    )
    if flops_per_image is not None:
        achieved = flops_per_image * timing.images_per_s
        info.update(
            flops_per_image=flops_per_image, macs_per_image=flops_per_image / 2, flops_convention=FLOPS_CONVENTION,
            achieved_flops_per_s=achieved, peak_flops_per_s=peak_flops_per_s,
            utilization=achieved / peak_flops_per_s if peak_flops_per_s else None,
        )
    registry.add(benchmark.group, info)
    return info


class Registry:
    """Per benchmark group, the extra_info of every benchmark measured so far this session.

    Each `add` refreshes the ratios of the whole group (the dicts are pytest-benchmark's own,
    saved at session end), so a ratio appears once both of its terms were measured, whatever
    the order the tests ran in or which of them -k selected. A group compares like with like:
    every variant in it must have run with the same number of torch threads.
    """

    def __init__(self) -> None:
        self.groups: dict[str, list[dict]] = defaultdict(list)

    def add(self, group: str, info: dict) -> None:
        infos = self.groups[group]
        if infos and info["num_threads"] != infos[0]["num_threads"]:
            raise AssertionError(f"group {group}: {info['variant']!r} ran with {info['num_threads']} threads, "
                                 f"{infos[0]['variant']!r} with {infos[0]['num_threads']}; a group compares like with like")
        infos.append(info)
        baseline = self.baseline(group)
        bare = self.variant(group, BARE_STEP)
        for i in infos:
            if baseline is not None and i is not baseline:
                i["speedup_vs_notebook"] = i["images_per_s"] / baseline["images_per_s"]
            if bare is not None and i is not bare:
                fraction = i["images_per_s"] / bare["images_per_s"]
                i.update(fraction_of_bare_step=fraction, data_pipeline_overhead=1 - fraction)

    def baseline(self, group: str) -> dict | None:
        return next((i for i in self.groups.get(group, ()) if i["role"] == BASELINE), None)

    def variant(self, group: str, variant: str) -> dict | None:
        return next((i for i in self.groups.get(group, ()) if i["variant"] == variant), None)

    def lines(self) -> list[str]:
        """One line per benchmark, grouped: what the terminal summary prints."""
        out = []
        for group, infos in sorted(self.groups.items()):
            threads = infos[0]["num_threads"]
            out.append(f"{group} ({threads} thread{'s' if threads > 1 else ''})")
            for i in infos:
                ratios = [f"{key}={i[key]:.3g}" for key in RATIOS_SHOWN if i.get(key) is not None]
                out.append(f"  {i['variant']:<34} {i['images_per_s']:>12,.1f} img/s  {' '.join(ratios)}")
        return out
