"""python -m ablations.run_grid: the `ablations grid` command (ablations.cli.grid)."""

from ablations.cli.grid import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
