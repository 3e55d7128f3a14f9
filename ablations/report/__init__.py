"""The report of a grid: its store (and a benchmark JSON) -> tables, figures, REPORT.md.

    python -m ablations.report --results runs/quick

Reads only the store and the JSON, never torch. `publish` is what the grid calls; `cli` is the
`ablations-report` command.
"""

from ablations.report.cli import cli, main
from ablations.report.publish import DEFAULT_TARGET, publish, write_report
from ablations.report.study import Study, analyse

__all__ = ["DEFAULT_TARGET", "Study", "analyse", "cli", "main", "publish", "write_report"]
