"""A saved pytest-benchmark JSON -> one throughput table per benchmark group.

The suites in bench/ record what a person compares in `extra_info`: images per second, the
variant's short name, and `role` = "baseline" for the notebook-style reference of its group,
against which every other variant's speed-up is given.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ablations.errors import UserError

COLUMNS = ["variant", "role", "suite", "images_per_s", "speedup", "speedup_vs_unpacked", "utilization", "kernel_ceiling", "achieved_flops_per_s",
           "peak_flops_per_s", "peak_memory_bytes", "batch_size", "img_size", "param_count", "num_threads", "precision", "dtype",
           "memory_format", "device_name", "median_s", "rounds", "name"]
# What a table shows; the CSV keeps every column. images/s come from the median call.
SHOWN = ["variant", "role", "images_per_s", "speedup", "speedup_vs_unpacked", "utilization", "kernel_ceiling", "peak_memory_bytes", "batch_size", "img_size",
         "num_threads", "precision", "memory_format", "median_s"]
MACHINE_KEYS = ("cpu", "cpu_model", "cpu_capability", "torch", "torch_threads", "peak_flops_per_s",
                "peak_flops_range", "peak_flops_source", "node", "machine", "system", "release", "python_version")


@dataclass(frozen=True)
class Bench:
    source: Path
    machine: dict[str, str]  # what the page shows about where it ran
    commit: dict[str, Any]
    datetime: str
    groups: dict[str, pd.DataFrame]  # group name -> table, fastest first

    def file_name(self, group: str) -> str:
        return "bench_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", group).strip("_")


def load_bench(path: str | Path) -> Bench:
    """Read and check a pytest-benchmark JSON file (`pytest bench --benchmark-json FILE`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no benchmark file at {path}; write one with `pytest bench --benchmark-json {path}`")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not JSON ({err}); pass a file written by pytest --benchmark-json") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("benchmarks"), list):
        raise UserError(f"{path} has no 'benchmarks' list; pass a file written by pytest --benchmark-json")
    rows = [_row(b, path) for b in raw["benchmarks"]]
    if not rows:
        raise UserError(f"{path} holds no benchmark; run `pytest bench --benchmark-only` first")
    frame = pd.DataFrame(rows)
    groups = {g: _group_table(part) for g, part in frame.groupby("group", sort=True)}
    return Bench(path, machine_summary(raw.get("machine_info") or {}), raw.get("commit_info") or {},
                 str(raw.get("datetime") or ""), groups)


def _row(bench: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        name, timing = bench["name"], bench["stats"]
        median_s = float(timing["median"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: a benchmark lacks name or stats.median; is it a pytest-benchmark file?") from None
    extra = bench.get("extra_info") or {}
    ips = _float(extra.get("images_per_s"))
    if ips is None and _float(extra.get("batch_size")) and median_s > 0:
        ips = float(extra["batch_size"]) / median_s  # one call = one batch, when the suite did not say
    return {
        "group": bench.get("group") or "ungrouped", "name": name, "variant": str(extra.get("variant") or name),
        "role": str(extra.get("role") or "candidate"), "suite": str(extra.get("suite") or ""),
        "images_per_s": ips, "utilization": _float(extra.get("utilization")),
        # a packed step against the unpacked one timed in the same rounds (bench/test_packed.py)
        "speedup_vs_unpacked": _float(extra.get("speedup_vs_unpacked")),
        # the utilization the step's matrix kernels alone would allow (bench.kernel_ceiling)
        "kernel_ceiling": _float(extra.get("kernel_ceiling")),
        "achieved_flops_per_s": _float(extra.get("achieved_flops_per_s")),
        "peak_flops_per_s": _float(extra.get("peak_flops_per_s")),  # the peak this row's utilization is held against
        "peak_memory_bytes": _float(extra.get("peak_memory_bytes")), "batch_size": _float(extra.get("batch_size")),
        "img_size": _float(extra.get("img_size")), "param_count": _float(extra.get("param_count")),
        "num_threads": _float(extra.get("num_threads")), "precision": str(extra.get("precision") or ""),
        "dtype": str(extra.get("dtype") or ""), "memory_format": str(extra.get("memory_format") or ""),
        "device_name": str(extra.get("device_name") or extra.get("device") or ""),
        "median_s": _float(extra.get("median_s")) or median_s, "rounds": _float(timing.get("rounds")),
    }


def _group_table(part: pd.DataFrame) -> pd.DataFrame:
    """Fastest first; speed-up against the group's baseline (the first by name if several)."""
    baselines = part[part["role"] == "baseline"].sort_values("name")
    base = baselines["images_per_s"].iloc[0] if len(baselines) else float("nan")
    table = part.assign(speedup=part["images_per_s"] / base)
    table = table.sort_values(["images_per_s", "name"], ascending=[False, True], na_position="last")
    return table[COLUMNS].reset_index(drop=True)


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a person compares, without those no benchmark of the group filled in."""
    keep = [c for c in SHOWN if c in ("variant", "images_per_s") or table[c].map(_filled).any()]
    return table[keep]


def _filled(value: Any) -> bool:
    return value not in (None, "") and not (isinstance(value, float) and math.isnan(value))


def machine_summary(info: dict[str, Any]) -> dict[str, str]:
    """cpu brand, plus any GPU or torch entries present (the suites may add them)."""
    out: dict[str, str] = {}
    cpu = info.get("cpu")
    if isinstance(cpu, dict):
        brand = cpu.get("brand_raw") or cpu.get("brand")
        cores = cpu.get("count")
        if brand:
            out["cpu"] = f"{brand}" + (f" ({cores} logical cores)" if cores else "")
    for key in MACHINE_KEYS[1:]:
        value = info.get(key)
        if value:
            out[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    for key in sorted(info):
        if any(word in key.lower() for word in ("gpu", "cuda", "torch", "device")):
            value = info[key]
            out[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return out


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
