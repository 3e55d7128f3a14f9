"""Numeric tables -> text a person reads: Markdown (GitHub), LaTeX (booktabs), HTML, and CSV.

The CSV keeps every column at full precision for further analysis; the other formats merge
a mean with its std ("97.12 ± 0.31") and an interval's ends ("[96.4, 97.9]") and round.
A missing number (one seed: no std, no interval, no test) prints as an en dash.
Numeric columns are right-aligned so digits line up; a LaTeX table is a floating `table` with
caption and label, ready to include in a paper; an HTML table styles itself inline so it can be pasted anywhere.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from ablations.errors import UserError, unknown_name
from ablations.report.options import FORMATS

TABLEFMT = {"md": "github", "tex": "latex_booktabs", "html": "html"}
MISSING = "–"

LABELS = {
    "runs": "runs", "n": "n", "n_ref": "n baseline", "test_acc": "final test acc %",
    "train_acc": "final train acc %", "gap": "train - test (points)", "val_acc": "final val acc %",
    "best_val_acc": "best val acc %", "best_val_epoch": "best val epoch", "interval_note": "interval note",
    "test_images": "test images", "epochs_to_target": "epochs to target", "wall_s": "wall s / run",
    "images_per_s": "train images/s", "diff": "diff (points)", "df": "df", "se": "SE (HC3)", "p": "p (unadjusted)",
    "p_holm": "p (Holm)", "significant": "p (Holm) < 0.05", "diff_ci": "diff simultaneous 95% CI (Bonferroni)",
    "test_acc_ci": "95% CI", "qualified_by": "qualified by interaction with", "within": "within",
    "term": "term", "sum_sq": "SS (Type II)", "F": "F (classical)", "F_hc3": "F (HC3)", "p_hc3": "p (HC3)",
    "partial_eta_sq": "partial eta²", "seeds": "seeds (pairs)", "paired_width": "paired CI width",
    "unpaired_low": "Welch CI low", "unpaired_high": "Welch CI high", "unpaired_width": "Welch CI width",
    "width_ratio": "Welch / paired width", "seed_correlation": "seed correlation", "std": "std (points)",
    "seeds_for_0_5": "seeds for 0.5 points", "seeds_for_1": "seeds for 1 point", "seeds_for_2": "seeds for 2 points",
    "family": "family size m", "notebook_says": "the notebook says", "study_finds": "this study finds",
    "conditions": "under these conditions", "diverged_epoch": "diverged at epoch", "run_id": "run id",
    "speedup": "speed-up vs baseline", "speedup_vs_unpacked": "vs unpacked, same rounds",
    "utilization": "utilization %", "kernel_ceiling": "kernel ceiling %", "peak_memory_bytes": "peak memory MiB", "median_s": "median s / call",
    "batch_size": "batch", "img_size": "px", "num_threads": "threads", "param_count": "parameters",
    "achieved_flops_per_s": "achieved TFLOP/s", "memory_format": "memory format",
    "kind": "kind", "points": "points at grand mean", "points_ci": "simultaneous 95% CI (points)",
    "error_change": "error change", "error_change_ci": "its 95% CI", "margin": "margin ± (points)",
    "p_tost": "TOST p (Holm)", "verdict": "verdict", "method": "method", "agrees": "same verdict",
    "note": "why the intervals differ", "verdict_note": "why the verdict and the interval differ",
    "p_improve": "P(level > reference)", "p_improve_ci": "bootstrap 95% CI",
    "pairs": "matched pairs", "rise": "rise over the last fifth (points)", "plateaued": "plateaued",
    "shown": "the interval shows", "robust_rise": "Theil–Sen rise (sensitivity)", "robust_rise_ci": "its 95% CI",
    "window": "epochs fitted", "budget": "budget (epochs)", "cells": "cells", "plateaued_cells": "cells plateaued",
    "rising_cells": "cells shown still rising",
    "runs_pending": "runs to finish", "all_plateaued": "every cell plateaued",
    "device_name": "device", "precision": "precision", "cpu_capability": "CPU capability", "done": "done",
    "epoch": "epoch", "last_epoch": "last epoch", "axis": "axis", "level": "level", "reference": "reference",
}
# Where a table's column means something more specific than LABELS says.
TABLE_LABELS = {
    "cells": {"test_acc_ci": "95% CI (seeds + test set, logit)"},
    "leaderboard": {"test_acc_ci": "95% CI (seeds + test set, logit)"},
    "anova": {"p": "p (classical F)", "significant": "p < 0.05 (the verdicts' covariance)"},
    "sensitivity": {"points_ci": "interval (points)"},
    "val_curves": {"val_acc": "val acc % (seed mean)", "val_acc_ci": "95% CI over seeds (logit)"},
    "effect_by_epoch": {"points": "effect (points)"},
    "pairing": {"diff": "diff per seed (points)", "diff_ci": "paired 95% CI"},
}


def _num(digits: int) -> Callable[[Any], str]:
    return lambda v: MISSING if _missing(v) else f"{float(v):.{digits}f}"


def _p(v: Any) -> str:
    if _missing(v):
        return MISSING
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _percent(v: Any) -> str:
    """A fraction as a percentage with one decimal."""
    return MISSING if _missing(v) else f"{100 * v:.1f}"


def _int(v: Any) -> str:
    return MISSING if _missing(v) else f"{int(v)}"


def _count(v: Any) -> str:
    """A count that may be a mean: '17' when whole, '2.5' when not."""
    return MISSING if _missing(v) else f"{int(round(v))}" if float(v) == round(float(v)) else f"{v:.1f}"


def _signed_percent(v: Any) -> str:
    """A relative change as a fraction -> '-41%'."""
    return MISSING if _missing(v) else f"{100 * v:+.0f}%"


def _yes(v: Any) -> str:
    return MISSING if _missing(v) else "yes" if bool(v) else "no"


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "p": _p, "p_holm": _p, "n": _int, "n_ref": _int, "runs": _int, "rank": _int, "seed": _int,
    "reached": _int, "diverged_epoch": _int, "batch_size": _int, "rounds": _int, "img_size": _int,
    "num_threads": _int, "param_count": _int,
    "df": _count, "wall_s": _num(1), "epochs_to_target": _num(1), "epoch": _count, "last_epoch": _count,
    "error_change": _signed_percent, "p_tost": _p, "p_improve": _num(2), "agrees": _yes, "plateaued": _yes,
    "all_plateaued": _yes, "pairs": _int, "cells": _int, "plateaued_cells": _int, "rising_cells": _int, "runs_pending": _int, "done": _int, "margin": _num(2),
    "speedup": lambda v: MISSING if _missing(v) else f"{v:.2f}×",
    "speedup_vs_unpacked": lambda v: MISSING if _missing(v) else f"{v:.2f}×",
    "images_per_s": lambda v: MISSING if _missing(v) else f"{v:,.0f}",
    "utilization": _percent, "kernel_ceiling": _percent,
    "peak_memory_bytes": lambda v: MISSING if _missing(v) else f"{v / 2**20:,.0f}",
    "median_s": lambda v: MISSING if _missing(v) else f"{v:.4g}",
    "achieved_flops_per_s": lambda v: MISSING if _missing(v) else f"{v / 1e12:.2f}",
    "significant": lambda v: "" if _missing(v) else "yes" if bool(v) else "",
    "F": _num(2), "F_hc3": _num(2), "p_hc3": _p, "sum_sq": _num(3), "partial_eta_sq": _num(3), "se": _num(3),
    "std": _num(3), "seed_correlation": _num(2), "test_images": _int, "best_val_epoch": _count, "seeds": _int,
    "family": _int,
    "width_ratio": lambda v: MISSING if _missing(v) else f"{v:.2f}×",
    **{c: lambda v: MISSING if _missing(v) else "more than 10,000" if math.isinf(v) else f"{int(v)}"
       for c in ("seeds_for_0_5", "seeds_for_1", "seeds_for_2")},
}


CI_AS_VALUES = ("error_change",)  # interval ends printed as the value is, not as plain numbers


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def humanize(frame: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Strings for people: mean ± std and [low, high] merged, units rounded, columns named."""
    names = {**LABELS, **(labels or {})}
    out: dict[str, list[str]] = {}
    columns = list(frame.columns)
    for col in columns:
        if col.endswith(("_std", "_ci_low", "_ci_high")) and col.rsplit("_", 2 if "_ci_" in col else 1)[0] in columns:
            continue  # merged into its mean's columns below
        if col == "reached" and "epochs_to_target" in columns:
            continue
        fmt = FORMATTERS.get(col, _yes if pd.api.types.is_bool_dtype(frame[col]) else
                             _int if pd.api.types.is_integer_dtype(frame[col]) else _num(2))
        values = [fmt(v) if not isinstance(v, str) else v for v in frame[col]]
        if f"{col}_std" in columns:
            values = [v if _missing(s) else f"{v} ± {s:.2f}" for v, s in zip(values, frame[f"{col}_std"], strict=True)]
        if col == "epochs_to_target" and "reached" in columns:
            values = [_reach(v, k, n) for v, k, n in zip(frame[col], frame["reached"], frame["n"], strict=True)]
        out[names.get(col, col)] = values
        if f"{col}_ci_low" in columns:
            ci = names.get(f"{col}_ci", "95% CI")
            end = FORMATTERS[col] if col in CI_AS_VALUES else (lambda v: f"{v:.2f}")
            out[ci] = [MISSING if _missing(lo) or _missing(hi) else f"[{end(lo)}, {end(hi)}]"
                       for lo, hi in zip(frame[f"{col}_ci_low"], frame[f"{col}_ci_high"], strict=True)]
    return pd.DataFrame(out, columns=list(out))


def _reach(mean: float, reached: int, n: int) -> str:
    if n == 0:
        return MISSING
    if reached == 0:
        return "not reached"
    return f"{mean:.1f}" + ("" if reached == n else f" ({reached} of {n} seeds)")


def labels_for(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The column names of table `name`: its own where it has them, then `extra`."""
    return {**TABLE_LABELS.get(name, {}), **(extra or {})}


def markdown(frame: pd.DataFrame, labels: dict[str, str] | None = None) -> str:
    """The table as GitHub Markdown, ready to inline in a page."""
    return _render(humanize(frame, labels), "md")


# A humanized number: "1,234", "-0.52", "97.12 ± 0.31", "< 0.001", "1.50×", "[96.40, 97.90]", "3.0 (2 of 3 seeds)".
_NUMBER = r"[+-]?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?"
NUMERIC = re.compile(rf"(?:<\s*)?{_NUMBER}[×%]?(?: ± {_NUMBER})?(?: \(\d+ of \d+ seeds\))?"
                     rf"|\[{_NUMBER}%?, {_NUMBER}%?\]")


def numeric_columns(shown: pd.DataFrame) -> list[bool]:
    """Which columns of a humanized table hold numbers only (blanks and dashes aside): those align right."""
    def numeric(values: pd.Series) -> bool:
        present = [str(v) for v in values if str(v) not in ("", MISSING, "nan")]
        return bool(present) and all(NUMERIC.fullmatch(v) for v in present)

    return [numeric(shown[c]) for c in shown.columns]


def html_table(shown: pd.DataFrame) -> str:
    """A humanized table as an HTML <table> with a header row; numeric cells right-aligned inline."""
    styles = [' style="text-align: right"' if r else "" for r in numeric_columns(shown)]

    def row(tag: str, cells) -> str:
        return "<tr>" + "".join(f"<{tag}{style}>{html.escape(str(c))}</{tag}>"
                                for c, style in zip(cells, styles, strict=True)) + "</tr>"

    body = "\n".join(row("td", values) for values in shown.itertuples(index=False, name=None))
    return f"<table>\n<thead>\n{row('th', shown.columns)}\n</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


LATEX_SPECIAL = {c: f"\\{c}" for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                     "\\": r"\textbackslash{}"}


def latex_table(shown: pd.DataFrame, name: str, caption: str) -> str:
    """A booktabs tabular in a floating table with its caption and `tab:<name>` label."""
    align = ["right" if r else "left" for r in numeric_columns(shown)]
    tabular = _render(shown, "tex", colalign=align or None)
    text = "".join(LATEX_SPECIAL.get(c, c) for c in caption)
    return "\n".join(["\\begin{table}[htbp]", "\\centering", f"\\caption{{{text}}}", f"\\label{{tab:{name}}}",
                      tabular, "\\end{table}"])


def _render(shown: pd.DataFrame, fmt: str, colalign: list[str] | None = None) -> str:
    # disable_numparse: the strings are already rounded; tabulate must not re-round them.
    return tabulate(shown, headers="keys", tablefmt=TABLEFMT[fmt], showindex=False, disable_numparse=True,
                    colalign=colalign)


def check_formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    """'md,tex' or ('md', 'tex') -> a checked tuple in canonical order."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = {f.strip().lower() for f in items if f.strip()}
    for f in sorted(chosen - set(FORMATS)):
        raise unknown_name("table format", f, FORMATS)
    if not chosen:
        raise UserError(f"--format needs at least one of: {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in chosen)


def write_table(frame: pd.DataFrame, folder: Path, name: str, formats: Iterable[str],
                labels: dict[str, str] | None = None, shown: pd.DataFrame | None = None,
                caption: str | None = None) -> list[Path]:
    """`folder/name.<ext>` for each format; returns the paths written. `shown`: the columns
    people read (default: all); the CSV always has every column. `caption`: the LaTeX caption
    (default: the name in words)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    shown = humanize(frame if shown is None else shown, labels_for(name, labels))
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False, lineterminator="\n")
            written.append(path)
            continue
        if fmt == "tex":
            text = latex_table(shown, name, caption or name.replace("_", " "))
        elif fmt == "html":
            text = html_table(shown)
        else:
            text = _render(shown, fmt)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written
