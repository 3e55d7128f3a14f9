"""Small pieces of generated prose that must be right every time: counts with their noun in the
right number, whole numbers without a decimal point, lists joined with "and", and p-values."""

from __future__ import annotations

import math
import re

VERBS = {"was": "were", "is": "are", "has": "have", "does": "do"}
NOUNS = {"this": "these", "it": "they", "epoch": "epochs"}


def plural(n: float, singular: str, many: str | None = None) -> str:
    """'1 seed', '2 seeds', '1 cell has', '0 runs': the count and its noun in the right number."""
    word = singular if n == 1 else many or _plural(singular)
    return f"{number(n)} {word}"


def _plural(phrase: str) -> str:
    """The last word in the plural ('done run' -> 'done runs'); a trailing verb takes its subject
    along ('cell has' -> 'cells have')."""
    words = phrase.split(" ")
    if words[-1] in VERBS and len(words) > 1:
        return " ".join([*words[:-2], _noun(words[-2]), VERBS[words[-1]]])
    return " ".join([*words[:-1], _noun(words[-1])])


def _noun(word: str) -> str:
    if word in NOUNS:
        return NOUNS[word]
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def number(v: float, digits: int = 1) -> str:
    """A whole number as one ('17', '1,500'), anything else with `digits` decimals ('2.5')."""
    if isinstance(v, float) and not math.isfinite(v):
        return "–"
    return f"{int(round(v)):,}" if float(v) == round(float(v)) else f"{v:,.{digits}f}"


def join(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [i for i in items if i]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}" if items else ""


def p_value(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


_THREADS = re.compile(r"\((\d+) threads?\)")


def device(name: str) -> str:
    """A device name as provenance records it, its thread count in the right number: '(1 thread)'."""
    return _THREADS.sub(lambda m: f"({plural(int(m.group(1)), 'thread')})", name)
