"""How a reader opens a run store without writing a byte: not in the file, not beside it.

A store a grid finished is in rollback-journal mode, and `mode=ro` reads it as it is. A store
left in WAL mode (a grid killed with SIGKILL, a grid still running, a `Store()` opened from
Python) is read as it is too, but SQLite's plain `mode=ro` would create -wal and -shm files
beside it, or rebuild the -shm index of a killed grid. So, by what lies beside the file:

- no -wal file: every committed page is in the main file (the last connection folded the WAL in
  when it closed); `immutable=1` reads it with no lock and no -shm.
- -wal and -shm: a grid is writing, or was killed; `readonly_shm=1` reads the WAL through the
  existing index without writing to it (SQLite builds a private copy in memory if it must).
- -wal without -shm (a folder copied without it): the two files are copied to a temporary
  folder and read there, since SQLite cannot read a WAL without an index it may write.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
# Bytes 18 and 19 of the header: the file format's write and read versions, 2 in WAL mode
# (https://www.sqlite.org/fileformat2.html#file_format_version_numbers).
WAL_VERSION_OFFSET, WAL_VERSION = 18, 2


def in_wal_mode(path: Path) -> bool:
    """True if the file is an SQLite database whose header says WAL mode."""
    with open(path, "rb") as handle:
        header = handle.read(WAL_VERSION_OFFSET + 2)
    return header.startswith(SQLITE_MAGIC) and header[WAL_VERSION_OFFSET] == WAL_VERSION


def reader_uri(path: Path) -> tuple[str, Path | None]:
    """The URI that reads `path` without writing, and a temporary folder to remove after (or None)."""
    uri = path.resolve().as_uri()
    if not in_wal_mode(path):
        return uri + "?mode=ro", None
    wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    if not wal.exists():
        return uri + "?mode=ro&immutable=1", None
    if shm.exists():
        return uri + "?mode=ro&readonly_shm=1", None
    copy = Path(tempfile.mkdtemp(prefix="ablations-store-"))
    for source in (path, wal):
        shutil.copyfile(source, copy / source.name)
    return (copy / path.name).as_uri() + "?mode=ro", copy
