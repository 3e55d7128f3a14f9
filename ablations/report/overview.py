"""What was run, on what, when: the facts a reader checks before trusting a number, as
(name, value) rows for the page's "What was run" section."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd

from ablations.config import STATUSES, TrainConfig
from ablations.errors import UserError
from ablations.report.budget import hardware
from ablations.report.runs import Runs, label

# Native image sizes, for the "image size" line (ablations.data knows them too, but imports torch).
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "synthetic": 28}


def overview(r: Runs) -> list[tuple[str, str]]:
    runs = r.runs
    prov = [p for p in runs["provenance"] if p]
    counts = runs["status"].value_counts()
    status = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    line, warning = hardware(r)
    source = "declared by the grid" if r.from_grid else "inferred from the configs"
    rows = [("grid", _join(runs["grid"])), ("dataset", _join(c.get("dataset") for c in runs["config"])),
            ("model", _join(c.get("model") for c in runs["config"])),
            ("image size", _join(_image_size(c) for c in runs["config"])),
            ("epochs", _join(c.get("epochs") for c in runs["config"])),
            ("axes", ("; ".join(f"{a}: {', '.join(r.levels(a))}" for a in r.axes) + f" ({source})")
             if r.axes else "none (one cell)"),
            ("seeds", _join(runs["seed"], numeric=True)),
            ("fixed settings", ", ".join(f"{k}={label(v)}" for k, v in sorted(r.fixed.items()))),
            ("runs", f"{len(runs)}: {status}"),
            ("hardware", line), ("torch", _join(p.get("torch") for p in prov)),
            ("commit", _join(p.get("git_commit") for p in prov)),
            ("dates (UTC)", _dates(runs)), ("run time", _run_time(runs))]
    if warning:
        rows.insert(rows.index(("hardware", line)) + 1, ("warning", warning))
    return rows


def _image_size(config: dict) -> str:
    try:
        cfg = TrainConfig.from_mapping(config)
    except (UserError, KeyError, TypeError):
        return "unknown"
    native = NATIVE_SIZE.get(cfg.dataset)
    return f"{cfg.input_size(native)} px" if native or cfg.image_size else "native"


def _dates(runs: pd.DataFrame) -> str:
    start, end = runs["started_at"].min(), runs["finished_at"].max()
    if math.isnan(start) and math.isnan(end):
        return "–"
    return f"{_stamp(start)} to {_stamp(end)}"


def _stamp(t: float) -> str:
    return "?" if math.isnan(t) else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _run_time(runs: pd.DataFrame) -> str:
    total = runs["wall_s"].sum()
    return f"{total:,.0f} s of training summed over runs ({total / 3600:.2f} h)"


def _join(values, numeric: bool = False) -> str:
    distinct = {str(v) for v in values if v is not None and v != ""}
    if not distinct:
        return "–"
    return ", ".join(sorted(distinct, key=(lambda s: (len(s), s)) if numeric else None))
