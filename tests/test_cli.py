"""The `ablations` command: its subcommands, honest --help (every choice listed, one default each),
the version, dispatch to the modules (`python -m ablations grid ...`), and shell completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ablations.augment.ops import OPS
from ablations.cli.main import COMMANDS, main
from ablations.config import DATASETS, MODEL_FORMS, PRECISIONS, SCHEDULES

REPO = Path(__file__).resolve().parents[1]


def ablations(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python -m ablations ...` as a user runs it, from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ablations", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for name in ("train", "grid", "report", "store", "bench"):
        assert re.search(rf"^\s+{name}\s+\w", out, flags=re.M), name
    assert set(COMMANDS) == {"train", "grid", "report", "store", "bench"}


def test_train_help_lists_the_choices_and_one_default_each(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # argparse wraps lines; words matter, not where they break
    for flag, choices in (("--dataset", (*DATASETS, "torchvision:CLASS", "imagefolder:PATH")), ("--model", MODEL_FORMS),
                          ("--schedule", SCHEDULES), ("--precision", PRECISIONS)):
        assert f"{flag} {{{','.join(choices)}}}" in flat, flag
    ops = re.search(r"OP is one of: ([\w, ]+)", flat).group(1)
    assert [op.strip() for op in ops.split(",")] == list(OPS)
    assert "--device {auto,cpu,cuda,cuda:N,mps}" in flat
    assert "[default: ()]" not in flat and "[default: None]" not in flat
    # one default per option: split the help into one block per flag and count
    blocks = re.split(r"\n  (?=-)", out)
    assert all(len(re.findall(r"default", b)) <= 1 for b in blocks), [b for b in blocks if b.count("default") > 1]
    assert "[default: mnist]" in flat and "[default: 0.1]" in flat and "[default: on]" in flat


def test_bad_names_are_one_line_errors_before_training() -> None:
    proc = ablations("train", "--augment", "hflip+mixup")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: unknown augmentation policy 'mixup'; choose one of: " + ", ".join(sorted(OPS))]
    proc = ablations("train", "--model", "seed_resnet")
    assert proc.returncode == 2 and "is now called 'notebook_resnet'" in proc.stderr
    assert ablations("nope").returncode == 2


def test_version_comes_from_the_package_metadata(capsys) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"ablations {metadata.version('ablations')}"


def test_grid_dry_run_through_python_m_ablations(tmp_path: Path) -> None:
    proc = ablations("grid", "--dry-run", "--grid", "smoke", "--results", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "8 runs (4 cells x 2 seeds); 0 finished, 8 to run" in proc.stdout, proc.stdout
    assert not (tmp_path / "REPORT.md").exists()  # a dry run runs nothing and publishes nothing


def test_module_forms_keep_working() -> None:
    for module in ("ablations.train", "ablations.run_grid", "ablations.report"):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (module, proc.stderr)


def test_bash_completion_knows_subcommands_flags_and_choices() -> None:
    pytest.importorskip("shtab", reason="completion is the optional `completion` extra (in `test` too)")
    proc = ablations("--print-completion", "bash")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert "complete" in script and "train" in script and "bench" in script
    assert "--weight-decay" in script and "notebook_resnet_adaptive" in script and "warmup_cosine" in script
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_bench_passes_its_arguments_to_pytest_benchmark(tmp_path: Path) -> None:
    # from another folder: the benchmarks are found in the checkout, not the working directory
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "ablations", "bench", "--collect-only", "-q", "-k", "transforms"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("bench/test_transforms.py::") for line in collected)
