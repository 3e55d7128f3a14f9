"""python -m ablations.train: the `ablations train` command (ablations.cli.train)."""

from ablations.cli.train import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
