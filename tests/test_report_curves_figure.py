"""The validation-curve figure of a budget pilot: labels beside their axes, no band from two seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402
from test_report_store import build_store  # noqa: E402

from ablations.report import curves, plots  # noqa: E402
from ablations.report.runs import load_runs  # noqa: E402
from ablations.store import Store, store_path  # noqa: E402


def figure_of(tmp_path: Path, seeds: tuple[int, ...]):
    build_store(tmp_path, seeds=seeds, extras=False, budgets=(4, 20))
    with Store.open_existing(store_path(tmp_path)) as store:
        r = load_runs(store)
    fig, caption = plots.curves(r, curves.val_curves(r))
    return fig, caption


def bands(ax) -> int:
    """Filled areas with at least one vertex: the intervals actually drawn."""
    return sum(len(p.vertices) for c in ax.collections if isinstance(c, PolyCollection) for p in c.get_paths())


def test_every_end_label_sits_within_its_axes_height(tmp_path: Path) -> None:
    fig, _ = figure_of(tmp_path, seeds=(0, 1, 2))
    labelled = [ax for ax in fig.axes if ax.texts]
    assert labelled
    for ax in labelled:
        low, high = ax.get_ylim()
        assert all(low <= text.xy[1] <= high for text in ax.texts), [t.xy for t in ax.texts]
    assert all(bands(ax) > 0 for ax in fig.axes)  # three seeds: each line has its band


def test_two_seeds_draw_no_band_and_the_caption_says_so(tmp_path: Path) -> None:
    fig, caption = figure_of(tmp_path, seeds=(0, 1))
    assert all(bands(ax) == 0 for ax in fig.axes)
    assert f"drawn where {plots.MIN_BAND_SEEDS} or more seeds are done" in caption
