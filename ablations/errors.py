"""The one exception type a user is meant to see: printed as one line, exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input or a missing resource that the user can fix; the message says how."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UserError:
    return UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(choices))}")


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point: a UserError becomes one line on stderr and exit status 2."""
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(code or 0)
