"""python -m ablations.report: the same command as `ablations-report`."""

from ablations.report.cli import cli

cli()
