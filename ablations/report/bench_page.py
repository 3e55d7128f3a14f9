"""The throughput page of a benchmark JSON: one figure first (images/s per variant against the
notebook-style baseline of its group, the speed-up written on each bar), then a table per group."""

from __future__ import annotations

import math

import pandas as pd

from ablations.report.bench import Bench, shown
from ablations.report.blocks import Block, Bullets, Paragraph, Plot, Section, Table


def bench_section(bench: Bench, figures: list[Plot], formats: tuple[str, ...]) -> list[Block]:
    """The figure, where the benchmark was run and with what, then one table per group."""
    commit = bench.commit.get("id") or "?"
    dirty = " (uncommitted changes)" if bench.commit.get("dirty") else ""
    blocks: list[Block] = [b for f in figures for b in f.blocks()]
    blocks += [Paragraph(f"From `{bench.source.name}` (pytest-benchmark, saved {bench.datetime or '?'}, "
                         f"commit {commit[:12]}{dirty})."),
               Bullets([f"{k}: {v}" for k, v in bench.machine.items()])]
    if any(table["kernel_ceiling"].notna().any() for table in bench.groups.values()):
        blocks.append(Paragraph(
            "utilization %: achieved FLOP/s over the peak of the precision used. kernel ceiling %: the most of "
            "that peak the step could reach if everything but its convolutions and matmuls were free (the "
            "utilization over the share of the step's time those ops take when re-run alone, back to back, "
            "beside it)."))
    groups = [Section(group, [Table(bench.file_name(group), shown(table), {"images_per_s": "images/s"},
                                    _bench_sentence(table), formats)], level=3)
              for group, table in bench.groups.items()]
    return [Section("Throughput", [*blocks, *groups])]


def _bench_sentence(table: pd.DataFrame) -> str:
    rated = table.dropna(subset=["images_per_s"])
    if rated.empty:
        return "No benchmark of this group reports images per second."
    top = rated.iloc[0]
    line = f"Fastest: `{top['variant']}` at {top['images_per_s']:,.0f} images/s"
    base = table[table["role"] == "baseline"].sort_values("name")
    if len(base) and not math.isnan(top["speedup"]):
        line += f", {top['speedup']:.2f}× the baseline `{base['variant'].iloc[0]}`"
    elif base.empty:
        line += " (no baseline in this group)"
    return line + "."
