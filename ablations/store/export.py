"""A store as files: runs and epochs as CSV or Parquet. The store is only read.

    ablations store export --results runs/quick --to parquet    # (--to mlflow|tensorboard: ablations.tracking.export)

Every format writes the same two tables: one row per run (config flattened to config.<key>
columns, provenance as one JSON column) and one row per epoch, read in one transaction.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablations.config import check_name
from ablations.errors import UserError
from ablations.staging import placed, staged

if TYPE_CHECKING:
    from ablations.store.sqlite import Store

PARQUET_MISSING = 'parquet export needs pyarrow, which is not installed here: pip install -e ".[parquet]"'


FILE_FORMATS = ("csv", "parquet")


def export_files(store: Store, to: str, out: str | os.PathLike | None = None) -> list[Path]:
    """Write the store's runs and epochs as `to` files into `out` (default: beside the store)."""
    check_name("file format", to, FILE_FORMATS)
    write = export_csv if to == "csv" else export_parquet
    return write(store, out or store.path.parent)


def export_tables(store: Store) -> tuple[tuple[list[str], list[list[Any]]], tuple[list[str], list[list[Any]]]]:
    """The runs and the epochs as flat tables, (header, rows) each: config flattened to config.<key>
    columns (a list such as milestones as JSON), provenance as one JSON column."""
    columns, runs, epochs = store.snapshot()
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run["config"] or {}))
    head = [c for c in columns if c not in ("config", "provenance")]
    header = head + [f"config.{k}" for k in keys] + ["provenance"]
    rows = [
        [run.get(c) for c in head]
        + [_cell((run["config"] or {}).get(k)) for k in keys]
        + [None if run["provenance"] is None else json.dumps(run["provenance"], sort_keys=True)]
        for run in runs
    ]
    from ablations.store.sqlite import EPOCH_FIELDS  # here: ablations.store.sqlite imports this module

    epoch_header = ["run_id", *EPOCH_FIELDS]
    epoch_rows = [[e.get(c) for c in epoch_header] for e in epochs]  # an older store lacks new columns
    return (header, rows), (epoch_header, epoch_rows)

def export_csv(store: Store, out_dir: str | os.PathLike) -> list[Path]:
    """Write runs.csv and epochs.csv (the tables of `export_tables`)."""
    out = Path(out_dir)
    runs, epochs = export_tables(store)
    with staged(out) as stage:  # both files or neither, each whole: renamed into place once written
        return placed(stage, out, [_write_csv(stage / "runs.csv", *runs), _write_csv(stage / "epochs.csv", *epochs)])


def export_parquet(store: Store, out_dir: str | os.PathLike) -> list[Path]:
    """Write runs.parquet and epochs.parquet: the CSV's columns, typed (needs pyarrow, the `parquet` extra)."""
    try:
        import pyarrow  # noqa: F401  (pandas writes parquet through it)
    except ImportError:
        raise UserError(PARQUET_MISSING) from None
    import pandas as pd

    out = Path(out_dir)
    tables = export_tables(store)
    with staged(out) as stage:  # as export_csv
        written = []
        for name, (header, rows) in zip(("runs", "epochs"), tables, strict=True):
            path = stage / f"{name}.parquet"
            pd.DataFrame(rows, columns=header).to_parquet(path, engine="pyarrow", index=False)
            written.append(path)
        return placed(stage, out, written)


def _cell(value: Any) -> Any:  # a list (milestones) as JSON, which pandas and people can read back
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
