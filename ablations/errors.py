"""The one exception type a user is meant to see: printed as one line, exit status 2."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterable

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input or a missing resource that the user can fix; the message says how."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UserError:
    return UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(choices))}")


def no_space(path: object) -> UserError:
    """A full disk: nothing the command wrote is partial (stores commit whole runs, reports and exports
    are renamed into place), so the same command, run again, completes what is left."""
    return UserError(f"no space left on {path}; free space and run the same command again")


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point: a UserError, or a full disk anywhere, becomes one line on stderr and exit status 2."""
    try:
        code = main()
    except (UserError, OSError) as err:
        if not isinstance(err, UserError) and not is_disk_full(err):
            raise
        print(f"error: {err if isinstance(err, UserError) else no_space(err.filename or 'the disk')}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(code or 0)
