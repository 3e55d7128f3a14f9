"""python -m ablations.report: the `ablations report` command (ablations.cli.report)."""

from ablations.cli.report import cli

cli()
