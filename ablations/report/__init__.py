"""The report of a grid: its store (and a benchmark JSON) -> tables, figures, REPORT.md and REPORT.html.

Reads only the store and the JSON, never torch. `publish.publish` is what the grid calls;
`study.analyse` decides what is computed. The command is `ablations report` (ablations.cli.report),
also `python -m ablations.report`. Nothing is imported here, so that `--help` answers before
pandas and matplotlib load.
"""
