"""Generated prose in the singular and the plural, whole numbers without decimals, and the
sentences that once came out garbled ("585 seeds per cell two cells, unpaired", "(1 threads)")."""

from __future__ import annotations

import pandas as pd
import pytest

from ablations.report.budget import seeds_per_cell
from ablations.report.format import humanize
from ablations.report.words import device, join, number, plural


@pytest.mark.parametrize("n, phrase, want", [
    (1, "seed", "1 seed"), (2, "seed", "2 seeds"), (0, "run", "0 runs"), (1, "done run", "1 done run"),
    (24, "done run", "24 done runs"), (1, "cell has", "1 cell has"), (3, "cell has", "3 cells have"),
    (2, "family", "2 families"), (2.5, "epoch", "2.5 epochs"), (1.0, "epoch", "1 epoch"),
    (1500, "image", "1,500 images"),
    (2, "combination", "2 combinations"), (1, "more row", "1 more row"), (3, "more row", "3 more rows"),
])
def test_counts_agree_with_their_noun(n, phrase, want) -> None:
    assert plural(n, phrase) == want


def test_devices_threads_and_lists_read_right() -> None:
    assert device("AMD EPYC 7B13 (1 threads)") == "AMD EPYC 7B13 (1 thread)"
    assert device("Intel(R) Xeon(R) Processor (2 threads)") == "Intel(R) Xeon(R) Processor (2 threads)"
    assert (number(17.0), number(2.5), number(1234.0)) == ("17", "2.5", "1,234")
    assert (join(["a"]), join(["a", "b"]), join(["a", "b", "c"])) == ("a", "a and b", "a, b and c")
    assert seeds_per_cell(pd.DataFrame({"n": [1, 1]})) == "1 seed per cell"
    assert seeds_per_cell(pd.DataFrame({"n": [6, 6]})) == "6 seeds per cell"
    assert seeds_per_cell(pd.DataFrame({"n": [5, 6]})) == "5 to 6 seeds per cell"


def test_whole_numbers_print_as_integers_in_tables() -> None:
    shown = humanize(pd.DataFrame({"df": [17.0, 14.5], "best_val_epoch": [2.0, 2.5], "n": [3, 4],
                                   "plateaued": [True, False], "error_change": [-0.41, 0.05],
                                   "error_change_ci_low": [-0.55, -0.1], "error_change_ci_high": [-0.22, 0.2]}))
    assert shown["df"].tolist() == ["17", "14.5"] and shown["best val epoch"].tolist() == ["2", "2.5"]
    assert shown["plateaued"].tolist() == ["yes", "no"]
    assert shown["error change"].tolist() == ["-41%", "+5%"] and shown["its 95% CI"].tolist()[0] == "[-55%, -22%]"
