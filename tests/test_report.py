"""The report end to end on real store files: the files and formats, the page's reading (budget,
training state, hardware, interactions before effects, the notebook's claims), determinism,
graceful degradation (one seed, one axis, an old store, no store), and no torch import.
The statistics themselves are checked against statsmodels in test_analysis.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_report_store import BATCH, EPOCHS, PROVENANCE, build_store, frame, make_old

from ablations.cli.report import main
from ablations.errors import UserError, run_cli
from ablations.report.publish import publish, write_report
from ablations.report.runs import load_runs, parse_baseline
from ablations.report.study import analyse
from ablations.store.sqlite import Store, store_path

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
GRID_FIGURES = ("effects", "learning_curves", "effect_by_epoch", "heatmap_test_acc", "train_vs_test", "lr_schedules")
TABLES = ("status", "problem_runs", "cells", "machines", "anova", "effects", "simple_effects", "sensitivity",
          "improvement", "vs_baseline", "pairing", "seeds_needed", "plateau", "val_curves", "effect_by_epoch",
          "notebook", "leaderboard")


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    results = tmp_path_factory.mktemp("grid")
    written = build_store(results)
    paths = write_report(results, results)
    return results, written, paths


def table(results: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(results / "tables" / f"{name}.csv", keep_default_na=True)


def runs_of(results: Path):
    with Store.open_existing(store_path(results)) as store:
        return load_runs(store)


# ---- the tables --------------------------------------------------------------------------
def test_cell_table_uses_the_final_model_and_validation_for_selection(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    cells = table(results, "cells").astype({"weight_decay": str})
    cells["weight_decay"] = cells["weight_decay"].map(lambda v: f"{float(v):g}")
    assert len(cells) == 8 and "best_test_acc" not in cells
    for (a, w, s), group in data.groupby(["augment", "weight_decay", "schedule"]):
        row = cells[(cells.augment == a) & (cells.weight_decay == w) & (cells.schedule == s)].iloc[0]
        assert row["n"] == 3 and row["test_acc"] == pytest.approx(group["acc"].mean())
        assert row["gap"] == pytest.approx((group["train"] - group["acc"]).mean())
        first = [next((e["epoch"] for e in ep if e["val_acc"] >= 0.98), None) for ep in group["epochs"]]
        reached = [f for f in first if f is not None]
        assert row["reached"] == len(reached)
        assert math.isnan(row["epochs_to_target"]) if not reached else row["epochs_to_target"] == pytest.approx(
            sum(reached) / len(reached))
        assert row["best_val_epoch"] == EPOCHS
    # the failed, diverged and queued runs are counted in their cells but in no statistic
    assert cells["runs"].sum() == 27 and cells["n"].sum() == 24


def test_interactions_leaderboard_and_status(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    inter = table(results, "interaction_augment__schedule").set_index("augment")
    assert inter.loc["notebook", "schedule=step"] == pytest.approx(
        data[(data.augment == "notebook") & (data.schedule == "step")]["acc"].mean())
    board = table(results, "leaderboard")
    assert board["test_acc"].is_monotonic_decreasing and board["rank"].tolist() == list(range(1, 9))
    best = data.groupby(["augment", "weight_decay", "schedule"])["acc"].mean().idxmax()
    assert (board.loc[0, "augment"], board.loc[0, "schedule"]) == (best[0], best[2])
    status = table(results, "status")
    assert status[["done", "failed", "diverged", "queued", "running"]].sum().tolist() == [24, 1, 1, 1, 0]
    problems = table(results, "problem_runs")
    assert sorted(problems["status"]) == ["diverged", "failed"]
    assert problems.set_index("status").loc["diverged", "diverged_epoch"] == 2
    assert problems.set_index("status").loc["failed", "error"] == "RuntimeError: out of memory (at trainer.py:120)"


# ---- the files and the page --------------------------------------------------------------
def test_every_table_format_figure_and_export_is_written(grid) -> None:
    results, _, paths = grid
    for name in TABLES:
        for ext in ("md", "tex", "html", "csv"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0, name
    assert "\\toprule" in (results / "tables" / "anova.tex").read_text()
    assert "<table>" in (results / "tables" / "cells.html").read_text()
    assert "simultaneous 95% CI (Bonferroni)" in (results / "tables" / "vs_baseline.md").read_text()
    for name in GRID_FIGURES:
        assert (results / "figures" / f"{name}.png").read_bytes()[:8] == PNG
        assert (results / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert (results / "export" / "runs.csv").is_file() and (results / "export" / "epochs.csv").is_file()
    assert paths[-1] == results / "REPORT.md" and all(p.is_file() for p in paths)


def test_page_opens_with_the_answer_then_what_the_study_can_support(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    page = (results / "REPORT.md").read_text()
    # the effect plot, the reading in at most ten lines, the learning curves, then the evidence
    assert page.index("](figures/effects.png)") < page.index("- **Under-trained**") < page.index(
        "](figures/learning_curves.png)") < page.index("<summary><b>Full reading</b></summary>") < page.index("|")
    answer = page[page.index("- **Under-trained**"):page.index("![Validation accuracy per epoch]")]
    assert 4 <= answer.count("\n- ") + 1 <= 10
    assert "**Under-trained** at 0.2% of the notebook's training images: validation accuracy still rose 0.2 points " \
           "or more over the last fifth of training in 8 of 8 cells." in answer
    assert "**augment** per level of schedule and weight_decay" in answer and "Interactions: " in answer
    assert "3 seeds per cell" in answer and "classical (a robust HC3 test needs 6 seeds per cell" in answer
    full = page[page.index("<summary><b>Full reading</b></summary>"):page.index("<summary><b>What was run</b>")]
    train_images = 1024 - 102  # synthetic train split less its default validation split (a tenth)
    steps = EPOCHS * (train_images // BATCH)
    share = 100 * steps * BATCH / (20 * 60_000)
    assert (f"Training budget: {EPOCHS} epochs x floor({train_images} train images / batch {BATCH}) = {steps} SGD "
            f"steps per run, {steps * BATCH:,} images seen: {share:.1f}% of the notebook's 20 epochs x 60,000 "
            "images.") in full
    assert f"Mean final train accuracy {data['train'].mean():.2f}%; validation accuracy still rises" in full
    for fact in ("Test CPU (2 threads), precision fp32, CPU capability AVX2", "2.5.1", "0123456789abcdef",
                 "synthetic", "28 px", "27: 1 queued, 24 done, 1 failed, 1 diverged", "1 diverged and 1 failed"):
        assert fact in page
    assert "Warning" not in page
    # interactions before main effects; the interaction the store was written with is found
    assert full.index("Interaction `augment x schedule`") < full.index("Main effect of `augment`")
    assert "Interaction `augment x schedule`, `notebook x step` vs `none x constant`" in full
    assert "n = 24 done runs, 3 seeds per cell; 3 epochs" in page.split("Leaderboard")[1]
    for name in GRID_FIGURES:
        assert f"](figures/{name}.png)" in page
    assert "not drawn" not in page and "One seed per cell" not in page


def test_notebook_claims_stand_beside_the_findings(grid) -> None:
    results, written, _ = grid
    claims = table(results, "notebook").set_index("axis")
    assert list(claims.index) == ["augment", "weight_decay", "schedule"]
    effects = table(results, "effects").astype({"level": str}).set_index("term")
    aug = effects.loc["augment"]
    assert claims.loc["augment", "study_finds"].startswith(f"`notebook` vs `none`: {aug['points']:+.2f} points")
    assert "read per level" in claims.loc["augment", "study_finds"]
    assert "0.2% of the notebook's images" in claims.loc["schedule", "conditions"]
    assert "epoch 15 of 20" in claims.loc["schedule", "notebook_says"]


def test_mixed_hardware_is_a_warning(tmp_path: Path) -> None:
    build_store(tmp_path, wds=(0.0,), schedules=("constant",), seeds=(0, 1), extras=False,
                provenance=lambda i: {**PROVENANCE, "precision": "bf16" if i % 2 else "fp32"})
    page = publish(tmp_path, tmp_path, formats=("md", "csv")).read_text()
    assert "**Warning: the runs of this store differ in device, precision or CPU capability**" in page
    assert "2 runs on Test CPU (2 threads), precision bf16, CPU capability AVX2" in page
    machines = pd.read_csv(tmp_path / "tables" / "machines.csv")
    assert machines[["precision", "runs", "done"]].values.tolist() == [["bf16", 2, 2], ["fp32", 2, 2]]


def test_one_machine_named_in_two_spellings_is_one_machine(tmp_path: Path) -> None:
    # older runs recorded "(1 threads)"; the same machine later records "(1 thread)"
    build_store(tmp_path, wds=(0.0,), schedules=("constant",), seeds=(0, 1), extras=False,
                provenance=lambda i: {**PROVENANCE, "device_name": f"Test CPU (1 thread{'s' if i % 2 else ''})"})
    page = publish(tmp_path, tmp_path, formats=("md", "csv")).read_text()
    assert "Warning" not in page and "Test CPU (1 thread), precision fp32" in page
    machines = pd.read_csv(tmp_path / "tables" / "machines.csv")
    assert machines[["device_name", "runs"]].values.tolist() == [["Test CPU (1 thread)", 4]]


def test_precision_as_the_studied_axis_is_no_hardware_warning() -> None:
    """The published parity study: one machine, fp32 and bf16 by design."""
    from ablations.report.budget import hardware

    runs = runs_of(REPO / "results" / "precision_parity")
    line, warning = hardware(runs)
    assert warning is None and "precision by cell (the precision axis)" in line, line


def test_report_is_deterministic(grid, tmp_path: Path) -> None:
    results, _, _ = grid
    again = tmp_path / "again"
    publish(results, again)
    assert (again / "REPORT.md").read_text() == (results / "REPORT.md").read_text()
    for csv in (results / "tables").glob("*.csv"):
        assert (again / "tables" / csv.name).read_bytes() == csv.read_bytes(), csv.name
    for svg in (results / "figures").glob("*.svg"):
        assert (again / "figures" / svg.name).read_bytes() == svg.read_bytes(), svg.name


def test_baseline_override_and_a_missing_baseline(grid) -> None:
    results, _, _ = grid
    runs = runs_of(results)
    study = analyse(runs, parse_baseline("augment=notebook,weight-decay=1e-3"), 0.98)
    assert (study.baseline, study.baseline_found) == (
        {"augment": "notebook", "weight_decay": "0.001", "schedule": "constant"}, True)
    diffs = study.tables["vs_baseline"]
    assert len(diffs) == 7 and not ((diffs.augment == "notebook") & (diffs.weight_decay == "0.001")
                                    & (diffs.schedule == "constant")).any()
    assert (diffs.loc[diffs.augment == "none", "diff"] > 0).all()  # against an augmented baseline
    with pytest.raises(UserError, match="not in the store; cells: augment=none, weight_decay=0, schedule=constant"):
        analyse(runs, {"weight_decay": "0.5"}, 0.98)
    with pytest.raises(UserError, match="choose from: augment, weight_decay, schedule"):
        analyse(runs, {"lr": "0.1"}, 0.98)
    assert parse_baseline("milestones=10,15,schedule=step") == {"milestones": "10,15", "schedule": "step"}


def test_grid_meta_declares_the_axes_and_the_order_of_levels(tmp_path: Path) -> None:
    meta = {"name": "test", "axes": {"schedule": ["step", "constant"], "augment": ["notebook", "hflip", "none"]},
            "seeds": [0, 1]}
    build_store(tmp_path, augments=("none", "hflip", "notebook"), wds=(0.0,), seeds=(0, 1), extras=False,
                grid_meta=meta)
    runs = runs_of(tmp_path)
    assert runs.axes == ("augment", "schedule") and runs.from_grid
    # TrainConfig's default first (the reference), then the grid's order
    assert runs.levels("augment") == ["none", "notebook", "hflip"] and runs.levels("schedule") == ["constant", "step"]
    page = publish(tmp_path, tmp_path, formats=("csv",)).read_text()
    assert "augment: none, notebook, hflip; schedule: constant, step (declared by the grid)" in page


# ---- degraded inputs ---------------------------------------------------------------------
def test_one_seed_per_cell_reports_without_intervals(tmp_path: Path) -> None:
    build_store(tmp_path, schedules=("step",), seeds=(0,), extras=False)
    page = publish(tmp_path, tmp_path, formats=("md", "csv")).read_text()
    assert not list((tmp_path / "tables").glob("*.tex"))  # only the formats asked for
    cells = pd.read_csv(tmp_path / "tables" / "cells.csv")
    assert (cells["n"] == 1).all() and cells["test_acc_ci_low"].isna().all() and cells["test_acc_std"].isna().all()
    assert (cells["interval_note"] == "one seed: seed spread unknown").all()
    assert not (tmp_path / "tables" / "anova.csv").exists()
    assert "No factorial model: one run per cell and seed leaves no residual" in page
    assert "One seed per cell: no intervals" in page and "No run failed or diverged" in page


def test_one_axis_store_skips_what_it_cannot_draw(tmp_path: Path) -> None:
    build_store(tmp_path, augments=("none", "hflip", "notebook"), wds=(0.0,), schedules=("cosine",), seeds=(0, 1),
                extras=False)
    page = publish(tmp_path, tmp_path, formats=("csv",)).read_text()
    assert "not drawn: needs weight_decay and schedule to vary" in page
    assert not (tmp_path / "figures" / "heatmap_test_acc.png").exists()
    for name in ("learning_curves", "effects", "effect_by_epoch", "train_vs_test", "lr_schedules"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == PNG
    assert "could not be drawn" not in page and "## Two-way means" not in page
    effects = pd.read_csv(tmp_path / "tables" / "effects.csv")
    assert effects["term"].unique().tolist() == ["augment"]
    assert effects["level"].tolist() == ["hflip", "notebook"] and set(effects["reference"]) == {"none"}
    assert pd.read_csv(tmp_path / "tables" / "pairing.csv").empty  # no two-level axis
    claims = pd.read_csv(tmp_path / "tables" / "notebook.csv").set_index("axis")
    assert claims.loc["weight_decay", "study_finds"] == "not studied: weight_decay is fixed at 0"


def test_a_store_from_before_the_validation_split_still_reports(tmp_path: Path) -> None:
    build_store(tmp_path, wds=(0.0,), seeds=(0, 1))
    make_old(tmp_path)
    page = publish(tmp_path, tmp_path, formats=("md", "csv")).read_text()
    assert "not drawn: no done run has per-epoch validation records" in page
    assert "Epochs to 98% validation accuracy: this store has no validation records." in page
    assert "no validation records, so whether accuracy had plateaued is unknown" in page
    assert pd.read_csv(tmp_path / "tables" / "cells.csv")["best_val_acc"].isna().all()
    assert (tmp_path / "tables" / "anova.csv").is_file()


# ---- the benchmark JSON ------------------------------------------------------------------
def bench_json(path: Path) -> Path:
    def bench(name, group, variant, role, ips, mean, **extra):
        info = {"images_per_s": ips, "suite": group.split("-")[0], "variant": variant, "role": role, "batch_size": 64,
                "device": "cpu", "device_name": "Test CPU", "dtype": "float32", "memory_format": "channels_last",
                **extra}
        return {"name": name, "group": group, "params": {}, "extra_info": info,
                "stats": {"mean": mean, "median": mean, "stddev": mean / 20, "rounds": 5, "min": mean, "max": mean}}

    raw = {"machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.11.2", "node": "box"},
           "commit_info": {"id": "0123456789abcdef", "dirty": False}, "datetime": "2025-01-02T03:04:05",
           "benchmarks": [
               bench("test_pil", "transforms", "torchvision PIL", "baseline", 800.0, 0.08),
               bench("test_batched", "transforms", "batched tensor", "candidate", 24000.0, 0.0027),
               bench("test_step_fp32", "model-step", "fp32", "baseline", 300.0, 0.21, utilization=0.05),
               bench("test_step_bf16", "model-step", "bf16", "candidate", 450.0, 0.14, utilization=0.075),
               bench("test_epoch_bare", "epoch-96px", "bare step", "candidate", 300.0, 0.21, utilization=0.24,
                     kernel_ceiling=0.43),
           ]}
    path.write_text(json.dumps(raw))
    return path


def test_bench_only_report_without_a_store(tmp_path: Path) -> None:
    out = tmp_path / "out"
    page = publish(tmp_path / "no-store", out, bench=bench_json(tmp_path / "bench.json")).read_text()
    steps = pd.read_csv(out / "tables" / "bench_model-step.csv")
    assert steps["variant"].tolist() == ["bf16", "fp32"]  # fastest first
    assert steps["speedup"].tolist() == pytest.approx([1.5, 1.0])
    assert pd.read_csv(out / "tables" / "bench_transforms.csv")["speedup"][0] == pytest.approx(30.0)
    # the kernel ceiling is shown beside the utilization where a benchmark measured it, and only there
    assert pd.read_csv(out / "tables" / "bench_epoch-96px.csv")["kernel_ceiling"][0] == pytest.approx(0.43)
    epoch_table = (out / "tables" / "bench_epoch-96px.md").read_text()
    assert "kernel ceiling %" in epoch_table and "| 43.0 " in epoch_table
    assert "kernel ceiling %" not in (out / "tables" / "bench_model-step.md").read_text()
    assert "kernel ceiling %: the most of that peak the step could reach" in page
    assert (out / "figures" / "bench_throughput.png").read_bytes()[:8] == PNG
    assert page.index("](figures/bench_throughput.png)") < page.index("|")  # the figure before any table
    assert "## Throughput" in page and "cpu: Test CPU (2 logical cores)" in page
    assert "Fastest: `batched tensor` at 24,000 images/s, 30.00× the baseline `torchvision PIL`." in page
    assert "## What was run" not in page


# ---- command line ------------------------------------------------------------------------
def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    proc = python("import sys; from ablations.cli.report import cli; cli()", "--results", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no run store at" in proc.stderr
    module = subprocess.run([sys.executable, "-m", "ablations.report", "--results", str(tmp_path / "nowhere")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=120)
    assert module.returncode == 2 and "no run store at" in module.stderr
    Store(store_path(tmp_path / "empty")).close()
    for args, words in ((["--results", str(tmp_path / "empty")], "holds no runs"),
                        (["--results", str(tmp_path / "empty"), "--format", "md,pdf"], "unknown table format"),
                        (["--bench", str(tmp_path / "none.json"), "--out", str(tmp_path / "b")], "no benchmark file at"),
                        (["--bench", str(tmp_path / "none.json")], "--bench alone needs --out DIR")):
        with pytest.raises(SystemExit) as exit_:
            run_cli(lambda args=args: main(args))
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and words in err, err


def test_cli_writes_without_importing_torch(tmp_path: Path) -> None:
    # augment is the only axis; a sample grid written by another module must be linked
    build_store(tmp_path, augments=("none", "notebook"), wds=(0.0,), schedules=("constant",), seeds=(0, 1), extras=False)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "augment_samples.png").write_bytes(PNG)
    code = ("import sys; from ablations.cli.report import main; import ablations.report.figures; "
            "assert 'torch' not in sys.modules; main(sys.argv[1:]); assert 'torch' not in sys.modules")
    proc = python(code, "--results", str(tmp_path), "--format", "md", "--bench", str(bench_json(tmp_path / "b.json")),
                  "--baseline", "augment=notebook")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"report: {tmp_path / 'REPORT.md'}"
    assert (tmp_path / "REPORT.html").is_file() and (tmp_path / "figures" / "bench_throughput.png").is_file()
    page = (tmp_path / "REPORT.md").read_text()
    assert "Baseline: augment=notebook." in page and "## Throughput" in page
    assert "](figures/augment_samples.png)" in page and "](figures/bench_throughput.png)" in page
