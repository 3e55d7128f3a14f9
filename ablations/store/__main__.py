"""python -m ablations.store: the `ablations store` command (ablations.cli.store)."""

from ablations.cli.store import cli

cli()
