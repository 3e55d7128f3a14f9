"""One colour per level of every axis, fixed from the grid, the same in every figure.

Okabe and Ito's palette (2008), chosen to stay distinct under the common colour-vision
deficiencies; each axis's levels take it in the grid's order of levels (the reference first), so
`schedule=step` has one colour wherever a figure colours by schedule. Verdicts have their own three.
"""

from __future__ import annotations

from ablations.report.runs import Runs

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
VERDICT_COLOURS = {"differs": "#D55E00", "equivalent": "#009E73", "not resolved": "#7F7F7F"}


def colours(r: Runs) -> dict[str, dict[str, str]]:
    """{axis: {level: colour}} for every axis of the store."""
    return {axis: {level: OKABE_ITO[i % len(OKABE_ITO)] for i, level in enumerate(r.levels(axis))} for axis in r.axes}


def verdict_colour(verdict: str) -> str:
    return next((c for v, c in VERDICT_COLOURS.items() if verdict.startswith(v)), VERDICT_COLOURS["not resolved"])
