"""argparse types built from the library's own checks, so a bad value is the suite's one-line error."""

from __future__ import annotations

from collections.abc import Callable


def checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type from a check that raises UserError. The UserError passes through argparse (it
    catches only ArgumentTypeError, TypeError and ValueError): the user sees the suite's one-line error,
    and an old name says what it is called now, before anything heavy loads."""
    def parse(value: str) -> str:
        check(value)
        return value

    return parse
