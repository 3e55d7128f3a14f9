"""Accuracies on the scale a study analyses them, and effects on that scale back in points.

Near 100% an accuracy cannot spread as it does at 90%: a cell at 99.8% has little room above it,
so seed standard deviations differ by two orders of magnitude between cells, and an additive
model on raw points mistakes that for interactions. On the logit scale a change multiplies the
odds of an error, which is how a setting acts on a nearly solved task (the step decay cutting the
error by 40% in both arms, say), and the spread is far more even.

Clipping: a run's accuracy is k of m images correct, and logit(k / m) is infinite at k = 0 or m.
Every run gets the empirical logit logit((k + 1/2) / (m + 1)) (Haldane's half-count): finite
everywhere, and within 0.5 / m of the plain fraction, 0.005 points on MNIST's 10,000 test images.
The per-cell interval of `stats.cell_interval` uses the same correction.

An effect d on the logit scale is given in points at the grand mean c (the mean of the cell means
on the logit scale): 100 * (expit(c + d/2) - expit(c - d/2)), the change between two accuracies
centred on the study's own. Margins declared in points are carried to the logit scale by the
inverse of the same map, so "the effect lies within ±m points" means the same on both scales.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

LOGIT, POINTS = "logit", "points"
PCT = 100.0
expit = special.expit


def to_scale(acc: np.ndarray | list[float], images: np.ndarray | list[float] | float, scale: str) -> np.ndarray:
    """Accuracies in percent -> the analysis scale (points as they are, or the empirical logit)."""
    acc = np.asarray(acc, dtype=float)
    if scale == POINTS:
        return acc
    m = np.broadcast_to(np.asarray(images, dtype=float), acc.shape)
    return special.logit((acc / PCT * m + 0.5) / (m + 1))


def centred_logit(acc: float, images: float) -> float:
    """The plain logit of an accuracy (percent), kept half an image from 0 and 100%: where a band
    drawn around a mean must stay centred on it (no half-count shrinkage)."""
    edge = 0.5 / images if np.isfinite(images) and images > 0 else 1e-6
    return float(special.logit(np.clip(acc / PCT, edge, 1 - edge)))


def to_points(d, centre: float, scale: str):
    """An effect (a number or an array) on the scale -> points of accuracy at the grand mean `centre`."""
    if scale == POINTS:
        return d
    values = np.asarray(d, dtype=float)
    out = PCT * (special.expit(centre + values / 2) - special.expit(centre - values / 2))
    return float(out) if out.ndim == 0 else out


def from_points(points: float, centre: float, scale: str) -> float:
    """A margin in points at the grand mean -> the same margin on the scale (the inverse of to_points).
    NaN when the margin is more than the room the grand mean leaves (it could never be reached)."""
    if scale == POINTS:
        return points
    if not 0 < points < PCT:
        return math.nan
    room = to_points(80.0, centre, scale)  # a logit difference of 80 is as wide as the scale goes
    if points > room:
        return math.nan
    return float(optimize.brentq(lambda d: to_points(d, centre, scale) - points, 0.0, 80.0, xtol=1e-12))


def signed_from_points(points, centre: float) -> np.ndarray:
    """`from_points` for an array of either sign (a figure's axis), clipped inside the room the grand
    mean leaves, so every tick has a position."""
    values = np.asarray(points, dtype=float)
    room = to_points(80.0, centre, LOGIT) * (1 - 1e-9)
    clipped = np.clip(np.abs(values), 1e-12, room)
    out = np.array([from_points(float(v), centre, LOGIT) for v in clipped.ravel()]).reshape(values.shape)
    return np.sign(values) * out


def error_change(d: float, centre: float, scale: str) -> float:
    """Relative change of the error rate between the two accuracies of `to_points` (-0.4: 40% fewer errors)."""
    if not math.isfinite(d):
        return math.nan
    if scale == POINTS:
        low, high = centre - d / 2, centre + d / 2
        return (PCT - high) / (PCT - low) - 1 if low < PCT else math.nan
    # error odds scale by exp(-d); the error rates themselves, centred on the grand mean:
    return float(special.expit(-(centre + d / 2)) / special.expit(-(centre - d / 2)) - 1)


def describe(scale: str) -> str:
    """The scale in words, for captions and the reading."""
    return ("the logit of the accuracy (empirical logit, (k + 1/2) / (m + 1)), effects back in points at the "
            "grand mean" if scale == LOGIT else "raw points of accuracy")
