"""The architecture as contracts: layers that import only downwards, a run that knows nothing of grids,
a report that never loads torch, argparse only in the command line, and `--help` before anything heavy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""})


@pytest.fixture(scope="module")
def lint_tool():
    if LINT_IMPORTS is None:
        pytest.skip("import-linter is not installed (it is in the test extra: pip install -e '.[test]')")
    return LINT_IMPORTS


def test_the_import_contracts_hold(lint_tool):
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


def test_a_run_that_imports_the_grid_breaks_the_contracts(lint_tool, tmp_path):
    shutil.copytree(REPO / "ablations", tmp_path / "ablations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    loop = tmp_path / "ablations" / "run" / "loop.py"
    loop.write_text(loop.read_text() + "\nimport ablations.grid  # noqa: E402,F401\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "A run knows nothing of grids, stores or trackers BROKEN" in proc.stdout
    assert "ablations.run.loop -> ablations.grid" in proc.stdout


def test_the_run_loads_no_grid_and_the_report_no_torch():
    run = python("import sys, ablations.run.execute; "
                 "print(sorted(m for m in sys.modules if m.startswith('ablations') and 'grid' in m))")
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr
    report = python("import sys, ablations.report.publish, ablations.report.study, ablations.report.figures; "
                    "print('torch' in sys.modules, 'torchvision' in sys.modules)")
    assert report.returncode == 0 and report.stdout.split() == ["False", "False"], report.stderr


def test_argparse_lives_only_in_the_command_line():
    users = sorted(str(p.relative_to(REPO)) for p in (REPO / "ablations").rglob("*.py")
                   if "argparse" in p.read_text() and p.parent.name != "cli")
    assert users == []


@pytest.mark.parametrize("command,default", [("grid", "TOML path [quick]"), ("train", "[default: 20]"),
                                             ("report", "[0.98]"), ("store", "{summary,export}")])
def test_help_shows_defaults_and_loads_neither_torch_nor_pandas(command, default):
    code = (f"import sys; sys.argv = ['ablations', '{command}', '--help']\n"
            "from ablations.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'pandas', 'matplotlib', 'statsmodels') if m in sys.modules))")
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"
    assert default in " ".join(proc.stdout.split())
