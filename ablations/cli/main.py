"""`ablations`: one command for the suite; each subcommand is an existing module's `main(argv)`.

    ablations grid                                 # the quick grid into runs/quick/, then its report
    ablations train --dataset mnist --augment notebook --epochs 2
    ablations report --results runs/quick
    ablations store summary --results runs/quick
    ablations bench -k transforms                  # pytest bench --benchmark-only -k transforms

The `python -m ablations.<module>` forms and the `ablations-train|grid|report` scripts stay:
this file only dispatches. A subcommand's own arguments go to it untouched, so `ablations train
--help` is the training command's help, choices and all.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ablations import __version__
from ablations.errors import EXIT_USAGE, UserError

# name -> (module with main(argv) and, where it has one, build_parser(), one line of help)
COMMANDS = {
    "train": ("ablations.cli.train", "train one run and print its metrics per epoch"),
    "grid": ("ablations.cli.grid", "run a grid of runs into a store, resumably, then write its report"),
    "report": ("ablations.cli.report", "tables, figures, REPORT.md and REPORT.html from a store"),
    "store": ("ablations.cli.store", "read a grid's store: runs per status; export to CSV, Parquet, MLflow or TensorBoard"),
    "bench": (None, "throughput benchmarks: pytest bench --benchmark-only, other arguments passed on"),
}
REPO = Path(__file__).resolve().parents[2]


def version() -> str:
    try:
        return metadata.version("ablations")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return __version__


def build_parser(*, completion: bool = False) -> argparse.ArgumentParser:
    """The top-level parser. With `completion`, each subcommand carries its module's own parser,
    so the completion script knows every flag and choice (this imports those modules, not torch)."""
    parser = argparse.ArgumentParser(
        prog="ablations", description="ResNet ablations: train, run grids, report, read stores, benchmark.",
        epilog="`ablations COMMAND --help` shows a command's own flags.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module, text) in COMMANDS.items():
        parents = [_module_parser(module)] if completion and module else []
        parents = [p for p in parents if p is not None]
        commands.add_parser(name, help=text, description=text, parents=parents, add_help=not parents)
    _add_completion(parser)
    return parser


def _module_parser(module: str) -> argparse.ArgumentParser | None:
    build = getattr(importlib.import_module(module), "build_parser", None)
    return build() if build else None  # a module that builds its parser inside main() completes by name only


def _add_completion(parser: argparse.ArgumentParser) -> None:
    try:
        import shtab
    except ImportError:  # an optional extra; say how to get it rather than hide the flag
        parser.add_argument("--print-completion", metavar="SHELL",
                            help="print a shell completion script (needs: pip install 'ablations[completion]')")
        return
    shtab.add_argument_to(parser, ["--print-completion"],
                          help="print a shell completion script, e.g. `ablations --print-completion bash`")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in COMMANDS:
            return _run(argv[0], argv[1:])
        args = build_parser(completion="--print-completion" in argv).parse_args(argv)
        if getattr(args, "print_completion", None):  # reached only without shtab
            raise UserError("shell completion needs shtab: pip install 'ablations[completion]' (or pip install shtab)")
        build_parser().print_help()
        return EXIT_USAGE
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _run(command: str, argv: list[str]) -> int:
    module, _ = COMMANDS[command]
    if module is None:
        return _bench(argv)
    return importlib.import_module(module).main(argv) or 0


def _bench(argv: list[str]) -> int:
    """pytest-benchmark over bench/ of the checkout; the benchmarks are not part of the installed package."""
    bench = REPO / "bench"
    if not bench.is_dir():
        raise UserError(f"no bench/ folder at {bench}; the benchmarks run from a checkout (pip install -e '.[test]')")
    if importlib.util.find_spec("pytest_benchmark") is None:
        raise UserError("the benchmarks need pytest-benchmark: pip install -e '.[test]'")
    return subprocess.call([sys.executable, "-m", "pytest", str(bench), "--benchmark-only", *argv], cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
