"""The command line: argparse lives here and only here. Each command parses its flags and calls the
library (`ablations.api`); `main.py` is the `ablations` command that dispatches to the others."""
