"""Where dataset files are: --data-root, else $ABLATIONS_DATA_ROOT, else ./data. No torch here: the Ray
driver resolves the root for its workers without loading the data code."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "ABLATIONS_DATA_ROOT"
DEFAULT_DATA_ROOT = "./data"


def resolve_data_root(data_root: str | None) -> Path:
    """--data-root, else $ABLATIONS_DATA_ROOT, else ./data."""
    return Path(data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser()
