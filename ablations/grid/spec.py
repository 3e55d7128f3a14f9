"""Grid: the ablation matrix. Axes x fixed values x seeds -> one TrainConfig per run.

A grid is a TOML file (ablations/grids/NAME.toml, or any path):

    description = "..."
    seeds = 2                 # seeds 0..N-1, or a list such as [0, 5, 9]
    [fixed]                   # any TrainConfig field
    dataset = "mnist"
    [axes]                    # any TrainConfig field: the factors studied
    augment = ["none", "notebook"]
    weight_decay = [0.0, 1e-3]
    [analysis]                # optional: the analysis, declared before the runs (pre-registration)
    endpoint = "final_test_acc"
    scale = "logit"           # or "points"
    margins = { augment = 0.5, weight_decay = 0.3 }   # equivalence margins, points at the grand mean
    plateau_points = 0.2

Configs are built through `TrainConfig.from_mapping`, the same code as the single-run CLI.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations.config import (
    EXECUTION_FIELDS,
    TrainConfig,
    canonical_dataset,
    cell_label,
    field_types,
    normalize_key,
    parse_value,
)
from ablations.errors import UserError

GRIDS_DIR = Path(__file__).resolve().parents[1] / "grids"  # ablations/grids/*.toml
TOP_LEVEL_KEYS = {"description", "seeds", "fixed", "axes", "analysis"}
ENDPOINTS = ("final_test_acc", "final_val_acc", "best_val_acc")  # accuracies a store keeps per run
SCALES = ("logit", "points")
ANALYSIS_KEYS = ("endpoint", "scale", "margins", "plateau_points")


@dataclass(frozen=True)
class Analysis:
    """The analysis a study declares before its runs: the one response, the scale its verdicts are
    tested on, an equivalence margin per factor (points of accuracy at the grand mean; a factor
    without one can be found to differ, never to be equivalent), and what counts as a plateau.
    A grid without [analysis] gets these defaults: every endpoint is an accuracy, and accuracies
    near 100% are analysed on the logit scale."""

    endpoint: str = "final_test_acc"
    scale: str = "logit"
    margins: dict[str, float] = field(default_factory=dict)
    plateau_points: float = 0.2  # validation points gained over the last fifth of training
    declared: bool = False  # True: the grid file has an [analysis] table

    def spec(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "scale": self.scale, "margins": dict(sorted(self.margins.items())),
                "plateau_points": self.plateau_points}


@dataclass(frozen=True)
class Grid:
    name: str
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    analysis: Analysis = field(default_factory=Analysis)

    def configs(self) -> list[TrainConfig]:
        """Every run, seed-major: seed 0 of every cell (the product of the axes, in file order),
        then seed 1 of every cell, ... so any prefix of a grid, an interrupted one included, is
        a balanced design with whole replicates of every cell."""
        base = TrainConfig.from_mapping(self.fixed)
        names = list(self.axes)
        cells = [
            TrainConfig.from_mapping(dict(zip(names, values, strict=True)), base=base)
            for values in itertools.product(*(self.axes[n] for n in names))
        ]
        return [dataclasses.replace(cell, seed=s) for s in self.seeds for cell in cells]

    def spec(self) -> dict[str, Any]:
        """What the store records of its grid: name, axes, fixed settings and seeds, as JSON values."""
        def plain(value: Any) -> Any:
            return list(value) if isinstance(value, tuple) else value

        spec = {
            "name": self.name,
            "axes": {k: [plain(v) for v in values] for k, values in self.axes.items()},
            "fixed": {k: plain(v) for k, v in sorted(self.fixed.items()) if k not in EXECUTION_FIELDS},
            "seeds": list(self.seeds),
        }
        # Only a declared analysis is recorded: a grid without one records what it always did. The
        # store tells grids apart by name, axes and fixed settings alone, so stores written before
        # [analysis] existed resume, and run ids hash the TrainConfig only, so none changes.
        if self.analysis.declared:
            spec["analysis"] = self.analysis.spec()
        return spec

    def cell_label(self, cfg: TrainConfig) -> str:
        """The run's coordinates on this grid's axes, e.g. 'augment=notebook weight_decay=0.001'."""
        return cell_label(cfg.to_dict(), self.axes) or "(single cell)"

    # ---- edits (each returns a new grid) -----------------------------------------------
    def with_fixed_values(self, values: Mapping[str, Any]) -> Grid:
        """Fix settings for every run; a fixed value replaces an axis of the same name."""
        fixed = dict(self.fixed)
        axes = dict(self.axes)
        for key, value in values.items():
            key = normalize_key(key)
            fixed[key] = _parse(key, value)
            axes.pop(key, None)
        return dataclasses.replace(self, fixed=fixed, axes=axes)

    def with_axis_values(self, values: Mapping[str, Iterable[Any]]) -> Grid:
        """Add or replace axes (key -> levels); an axis replaces a fixed value of the same name."""
        axes = dict(self.axes)
        fixed = dict(self.fixed)
        for key, levels in values.items():
            key = normalize_key(key)
            if isinstance(levels, (str, bytes)) or not isinstance(levels, Iterable):
                raise UserError(f"axis {key}: give a list of levels, e.g. {key}=[0, 1e-3]")
            axes[key] = _levels(key, list(levels), "--axis")
            fixed.pop(key, None)
        return dataclasses.replace(self, axes=axes, fixed=fixed)

    def with_seeds(self, n: int | None) -> Grid:
        if n is None:
            return self
        return dataclasses.replace(self, seeds=parse_seeds(n, "--seeds"))


def only(configs: list[TrainConfig], wanted: Mapping[str, Any]) -> list[TrainConfig]:
    """Keep the runs whose config matches every `key: value` (values typed, or as a flag gives them)."""
    for key, value in wanted.items():
        key = normalize_key(key)
        value = _parse(key, value)
        if key == "dataset":  # configs hold an image folder's absolute path
            value = canonical_dataset(value)
        configs = [c for c in configs if getattr(c, key) == value]
    return configs


def parse_assignments(texts: Iterable[str], flag: str) -> dict[str, str]:
    """`key=value` strings (--set, --only) as {key: value}; the values are parsed with the setting's type later."""
    return dict(_split_assignment(text, flag) for text in texts)


def parse_axes(texts: Iterable[str]) -> dict[str, list[str]]:
    """`key=v1,v2` strings (--axis) as {key: [v1, v2]}."""
    return {key: _split_values(key, value) for key, value in (_split_assignment(t, "--axis") for t in texts)}


def available_grids() -> list[str]:
    return sorted(p.stem for p in GRIDS_DIR.glob("*.toml"))


def load_grid(name_or_path: str) -> Grid:
    """A built-in grid by name, or a file: a path ending in .toml or holding a separator.

    A name is never looked up on disk, so a folder that happens to share a grid's name (a
    results folder called `quick/`) is never read as a grid."""
    looks_like_path = name_or_path.endswith(".toml") or "/" in name_or_path or os.sep in name_or_path
    if not looks_like_path:
        path = GRIDS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise UserError(
                f"unknown grid {name_or_path!r}; choose one of: {', '.join(available_grids())}, or give a .toml path"
            )
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise UserError(f"grid file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:  # TOML is UTF-8 by definition; say where the first bad byte is
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise UserError(f"grid file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}); "
                        f"save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"grid file {path} is not valid TOML: {err}") from None
    return grid_from_dict(path.stem, raw, source=str(path))


def grid_from_dict(name: str, raw: dict[str, Any], *, source: str = "<grid>") -> Grid:
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; a grid has {', '.join(sorted(TOP_LEVEL_KEYS))}")
    for table in ("fixed", "axes"):
        if not isinstance(raw.get(table, {}), dict):
            raise UserError(f"{source}: [{table}] must be a table of settings, e.g. [{table}] epochs = 2")
    fixed = {key: _parse(key, v) for key, v in _settings(raw.get("fixed", {}), "fixed", source).items()}
    axes: dict[str, list[Any]] = {}
    for key, values in _settings(raw.get("axes", {}), "axes", source).items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{source}: axis {key!r} needs a non-empty list of values")
        axes[key] = _levels(key, values, source)
        if key in fixed:  # which one was meant is the user's call, not a silent precedence rule
            raise UserError(f"{source}: {key!r} is in both [axes] and [fixed]; keep it in one of them")
    seeds = parse_seeds(raw.get("seeds", 1), f"{source}: seeds")
    analysis = parse_analysis(raw["analysis"], source, axes) if "analysis" in raw else Analysis()
    grid = Grid(name=name, description=raw.get("description", ""), fixed=fixed, axes=axes, seeds=seeds,
                analysis=analysis)
    grid.configs()  # validate every value now, at the edge, before anything runs
    return grid


def parse_analysis(raw: Any, source: str, axes: Iterable[str]) -> Analysis:
    """An [analysis] table (from a grid file, or as a store recorded it), checked key by key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: [analysis] must be a table, e.g. [analysis] scale = \"logit\"")
    for key in raw:
        if key not in ANALYSIS_KEYS:
            raise UserError(f"{source}: unknown key analysis.{key}; [analysis] has {', '.join(ANALYSIS_KEYS)}")
    endpoint, scale = raw.get("endpoint", Analysis.endpoint), raw.get("scale", Analysis.scale)
    for key, value, choices in (("endpoint", endpoint, ENDPOINTS), ("scale", scale, SCALES)):
        if value not in choices:
            raise UserError(f"{source}: analysis.{key} {value!r} is not one of: {', '.join(choices)}")
    margins = raw.get("margins", {})
    if not isinstance(margins, dict):
        raise UserError(f"{source}: analysis.margins must be a table of points per axis, e.g. {{ augment = 0.5 }}")
    names = {normalize_key(a) for a in axes}
    checked = {}
    for key, value in margins.items():
        if normalize_key(key) not in names:
            raise UserError(f"{source}: analysis.margins.{key} is not an axis of this grid; axes: "
                            f"{', '.join(sorted(names)) or 'none'}")
        checked[normalize_key(key)] = _points(value, f"{source}: analysis.margins.{key}")
    plateau = _points(raw.get("plateau_points", Analysis.plateau_points), f"{source}: analysis.plateau_points")
    return Analysis(endpoint, scale, checked, plateau, declared=True)


def _points(value: Any, where: str) -> float:
    """A positive number of accuracy points, below 100."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 100:
        raise UserError(f"{where} must be a number of accuracy points between 0 and 100, got {value!r}")
    return float(value)


def parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    """A count N (seeds 0..N-1) or a list of distinct seeds, each an integer 0 or more."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UserError(f"{where} must be 1 or more, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                   for s in value):
        if len(set(value)) != len(value):
            raise UserError(f"{where}: seed {next(s for s in value if value.count(s) > 1)} is listed twice")
        return tuple(value)
    raise UserError(f"{where}: expected a count such as 5 or a list of seeds such as [0, 1, 2], got {value!r}")


def _settings(table: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    """A TOML table's settings by their canonical names; `weight-decay` and `weight_decay` in one
    table are the same setting given twice."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        canonical = normalize_key(key)
        if canonical in out:
            raise UserError(f"{source}: {canonical!r} is given twice in [{name}]; keep one")
        out[canonical] = value
    return out


def _levels(key: str, values: list[Any], where: str) -> list[Any]:
    """An axis's levels, parsed; a level listed twice (`none,none`, or `0` and `0.0`) would list every
    run twice and call one cell two."""
    levels = [_parse(key, v) for v in values]
    if not levels:
        raise UserError(f"{where}: axis {key!r} needs at least one value")
    for i, level in enumerate(levels):
        if level in levels[:i]:
            raise UserError(f"{where}: axis {key!r} lists {values[i]!r} twice; give each level once")
    return levels


def _parse(key: str, value: Any) -> Any:
    return parse_value(key, value, field_types()[key])


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    if "=" not in text:
        raise UserError(f"{flag} {text!r}: expected key=value, e.g. {flag} weight-decay=1e-3")
    key, value = text.split("=", 1)
    return normalize_key(key), value


def _split_values(key: str, value: str) -> list[str]:
    # milestones are themselves comma lists; an axis of them separates values with ';'
    sep = ";" if key == "milestones" else ","
    values = [v for v in value.split(sep) if v.strip()]
    if not values:
        raise UserError(f"--axis {key}: give at least one value")
    return values
