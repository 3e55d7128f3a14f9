"""Files that appear whole or not at all: the report and the export write into a temporary folder
beside their target and rename each file into place only once every file is written.

A failure while writing (a full disk, Ctrl-C, a bug) leaves the previous files, or none, never a
half-written table or a report whose figures are missing; renames within one file system need no
space. Files of the target that this write does not produce (the grid's augmentation samples, the
store itself) are left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablations.errors import is_disk_full, no_space

STAGING_PREFIX = ".staging-"  # hidden, and never mistaken for a result


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A fresh folder inside `target` to write into; on success its files replace their namesakes in
    `target` (files in subfolders first, then the top level in name order: REPORT.md last), and it is
    removed either way. A full disk is the one-line error naming `target`."""
    staging = None
    try:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
        yield staging
        move_into_place(staging, target)
    except OSError as err:
        if is_disk_full(err):
            raise no_space(target) from None
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging: Path, target: Path) -> None:
    files = [p for p in staging.rglob("*") if not p.is_dir()]
    files.sort(key=lambda p: (len(p.relative_to(staging).parts) == 1, str(p)))
    for path in files:  # every folder first: a rename needs no space, a new folder may
        (target / path.relative_to(staging)).parent.mkdir(parents=True, exist_ok=True)
    for path in files:
        os.replace(path, target / path.relative_to(staging))


def carry(target: Path, staging: Path, relative: str) -> None:
    """Bring a file of `target` that this write links but does not produce into the staging folder, so
    what is written there can see it (a hard link: no space, and the rename back changes nothing)."""
    source, copy = target / relative, staging / relative
    if not source.is_file():
        return
    copy.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, copy)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, copy)


def placed(staging: Path, target: Path, paths: list[Path]) -> list[Path]:
    """Where paths written under `staging` are once moved into `target`."""
    return [target / p.relative_to(staging) for p in paths]
