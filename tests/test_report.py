"""The report end to end on real store files: every number against a direct pandas/scipy
computation on the values written, every file present, the page's sentences, determinism,
graceful degradation (one seed, one axis, no store), and no torch import."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ablations.config import TrainConfig
from ablations.errors import UserError, run_cli
from ablations.report import grid_tables, main, publish, write_report
from ablations.report_tables import load_runs, parse_baseline
from ablations.store import Store, new_owner, store_path

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
PROVENANCE = {"git_commit": "0123456789abcdef", "torch": "2.5.1", "device": "cpu", "device_name": "Test CPU (2 threads)",
              "host": "test", "platform": "Linux", "cuda": None, "versions": {"python": "3.11"}}
GRID_FIGURES = ("learning_curves_test_acc", "learning_curves_test_loss", "heatmap_test_acc", "main_effects",
                "train_vs_test", "lr_schedules")


def final_acc(augment: str, wd: float, schedule: str, seed: int) -> float:
    """Known final test accuracies: augmentation costs 3 points, the rest is small, plus seeded noise."""
    noise = np.random.default_rng([len(augment) + 31 * ord(augment[0]), int(wd * 1e4), len(schedule), seed]).normal(0, 0.002)
    return 0.985 - 0.03 * (augment == "seed") + 0.002 * (schedule == "step") + 0.0005 * (wd > 0) + float(noise)


def epochs_for(acc: float, augment: str, n: int = 3) -> list[dict]:
    # test accuracy climbs 1 point per epoch to its final value; augmentation lowers train accuracy
    train = acc + (0.01 if augment == "none" else -0.005)
    return [{"epoch": e, "lr": 0.1, "train_loss": 1 / e, "train_acc": train - 0.01 * (n - e), "test_loss": 0.5 / e,
             "test_acc": acc - 0.01 * (n - e), "seconds": 2.0, "images_per_s": 500.0 + e} for e in range(1, n + 1)]


def build_store(results: Path, augments=("none", "seed"), wds=(0.0, 1e-3), schedules=("constant", "step"),
                seeds=(0, 1, 2), extras: bool = True) -> dict[str, dict]:
    """A store filled through the real API; returns {run_id: what was written}."""
    written = {}
    configs = [TrainConfig(dataset="synthetic", augment=a, weight_decay=w, schedule=s, seed=k, epochs=3)
               for a in augments for w in wds for s in schedules for k in seeds]
    failed = TrainConfig(dataset="synthetic", augment=augments[0], weight_decay=wds[0], schedule=schedules[0], seed=7,
                         epochs=3)
    diverged = TrainConfig(dataset="synthetic", augment=augments[-1], weight_decay=wds[-1], schedule=schedules[-1],
                           seed=8, epochs=3)
    queued = TrainConfig(dataset="synthetic", augment=augments[-1], weight_decay=wds[0], schedule=schedules[0], seed=9,
                         epochs=3)
    with Store(store_path(results)) as store:
        store.enqueue(configs + ([failed, diverged, queued] if extras else []), grid="test")
        owner = new_owner()
        for cfg in configs:
            acc = final_acc(cfg.augment, cfg.weight_decay, cfg.schedule, cfg.seed)
            epochs = epochs_for(acc, cfg.augment)
            result = {"status": "done", "epochs": epochs, "wall_s": 6.0 + cfg.seed, "final_test_acc": acc,
                      "final_train_acc": epochs[-1]["train_acc"], "best_test_acc": acc,
                      "final_test_loss": 0.5 / 3, "train_images_per_s": 500.0 + cfg.seed}
            assert store.claim(cfg.run_id, owner)
            store.finish(cfg.run_id, owner, result, PROVENANCE)
            written[cfg.run_id] = {"cfg": cfg, **result}
        if extras:
            assert store.claim(failed.run_id, owner)
            store.fail(failed.run_id, owner, "RuntimeError: out of memory (at trainer.py:120)\nTried to allocate 2 GiB")
            assert store.claim(diverged.run_id, owner)
            bad = [{**e, "train_loss": float("nan"), "test_acc": 0.1} for e in epochs_for(0.1, "none", 2)]
            store.finish(diverged.run_id, owner, {"status": "diverged", "epochs": bad, "diverged_epoch": 2,
                                                   "final_test_acc": 0.1, "wall_s": 3.0}, PROVENANCE)
    return written


def frame(written: dict[str, dict]) -> pd.DataFrame:
    """What was written, as the test's own DataFrame (accuracies in percent)."""
    return pd.DataFrame([{"augment": w["cfg"].augment, "weight_decay": f"{w['cfg'].weight_decay:g}",
                          "schedule": w["cfg"].schedule, "seed": w["cfg"].seed, "acc": 100 * w["final_test_acc"],
                          "train": 100 * w["final_train_acc"], "wall_s": w["wall_s"], "epochs": w["epochs"]}
                         for w in written.values()])


def holm_reference(p: list[float]) -> list[float]:
    """Holm written the long way: adjusted p_(i) = max over j <= i of min(1, (m - j) p_(j))."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [0.0] * len(p)
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (len(p) - j) * p[order[j]]) for j in range(rank + 1))
    return out


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


# ---- the numbers -------------------------------------------------------------------------
def test_cell_table_matches_direct_computation(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    cells = table(results, "cells").astype({"weight_decay": str})
    cells["weight_decay"] = cells["weight_decay"].map(lambda v: f"{float(v):g}")
    assert len(cells) == 8
    for (a, w, s), group in data.groupby(["augment", "weight_decay", "schedule"]):
        row = cells[(cells.augment == a) & (cells.weight_decay == w) & (cells.schedule == s)].iloc[0]
        acc = group["acc"]
        low, high = sps.t.interval(0.95, len(acc) - 1, loc=acc.mean(), scale=acc.std(ddof=1) / math.sqrt(len(acc)))
        assert row["n"] == 3
        assert row["test_acc"] == pytest.approx(acc.mean())
        assert row["test_acc_std"] == pytest.approx(acc.std(ddof=1))
        assert (row["test_acc_ci_low"], row["test_acc_ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["gap"] == pytest.approx((group["train"] - acc).mean())
        assert row["wall_s"] == pytest.approx(group["wall_s"].mean())
        first = [next((e["epoch"] for e in ep if e["test_acc"] >= 0.98), None) for ep in group["epochs"]]
        reached = [f for f in first if f is not None]
        assert row["reached"] == len(reached)
        assert (math.isnan(row["epochs_to_target"]) if not reached
                else row["epochs_to_target"] == pytest.approx(np.mean(reached)))
    # the failed, diverged and queued runs are counted in their cells but in no statistic
    assert cells["runs"].sum() == 27 and cells["n"].sum() == 24


def test_differences_against_baseline_are_welch_with_holm(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    diffs = table(results, "vs_baseline")
    diffs["weight_decay"] = diffs["weight_decay"].map(lambda v: f"{float(v):g}")
    base = data[(data.augment == "none") & (data.weight_decay == "0") & (data.schedule == "constant")]["acc"]
    assert len(diffs) == 7  # every cell but the baseline
    expected_p = []
    for row in diffs.itertuples():
        cell = data[(data.augment == row.augment) & (data.weight_decay == row.weight_decay)
                    & (data.schedule == row.schedule)]["acc"]
        ref = sps.ttest_ind(cell, base, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert row.diff == pytest.approx(cell.mean() - base.mean())
        assert row.p == pytest.approx(ref.pvalue)
        assert (row.diff_ci_low, row.diff_ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
        expected_p.append(ref.pvalue)
    assert diffs["p_holm"].tolist() == pytest.approx(holm_reference(expected_p))
    assert diffs["significant"].tolist() == [p < 0.05 for p in holm_reference(expected_p)]
    assert diffs[diffs.augment == "seed"]["significant"].all()  # 3 points, noise 0.2: must be found


def test_main_effects_pool_the_other_axes(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    effects = table(results, "main_effects").astype({"level": str})
    effects["level"] = [f"{float(v):g}" if a == "weight_decay" else v for a, v in zip(effects.axis, effects.level, strict=True)]
    expected_p = []
    for axis, ref_level, level in (("augment", "none", "seed"), ("weight_decay", "0", "0.001"),
                                   ("schedule", "constant", "step")):
        treat, ref = data[data[axis] == level]["acc"], data[data[axis] == ref_level]["acc"]
        row = effects[(effects.axis == axis) & (effects.level == level)].iloc[0]
        test = sps.ttest_ind(treat, ref, equal_var=False)
        assert row["n"] == 12 and row["test_acc"] == pytest.approx(treat.mean())
        assert row["test_acc_ci_low"] == pytest.approx(sps.t.interval(0.95, 11, treat.mean(), sps.sem(treat))[0])
        assert row["diff"] == pytest.approx(treat.mean() - ref.mean()) and row["p"] == pytest.approx(test.pvalue)
        expected_p.append(test.pvalue)
    tested = effects.dropna(subset=["p"])
    assert tested["p_holm"].tolist() == pytest.approx(holm_reference(expected_p))


def test_interactions_leaderboard_and_status(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    inter = table(results, "interaction_augment__schedule").set_index("augment")
    assert inter.loc["seed", "schedule=step"] == pytest.approx(
        data[(data.augment == "seed") & (data.schedule == "step")]["acc"].mean())
    assert {p.name for p in (results / "tables").glob("interaction_*.csv")} == {
        "interaction_augment__weight_decay.csv", "interaction_augment__schedule.csv",
        "interaction_weight_decay__schedule.csv"}
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
    for name in ("status", "problem_runs", "cells", "vs_baseline", "main_effects", "leaderboard"):
        for ext in ("md", "tex", "html", "csv"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    assert "\\toprule" in (results / "tables" / "cells.tex").read_text()
    assert "<table>" in (results / "tables" / "cells.html").read_text()
    assert "|" in (results / "tables" / "cells.md").read_text()
    for name in GRID_FIGURES:
        assert (results / "figures" / f"{name}.png").read_bytes()[:8] == PNG
        assert (results / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert (results / "export" / "runs.csv").is_file() and (results / "export" / "epochs.csv").is_file()
    assert paths[-1] == results / "REPORT.md" and all(p.is_file() for p in paths)


def test_page_states_the_run_and_generated_readings(grid) -> None:
    results, written, _ = grid
    data = frame(written)
    page = (results / "REPORT.md").read_text()
    for fact in ("Test CPU (2 threads)", "2.5.1", "0123456789abcdef", "synthetic", "28 px",
                 "27: 24 done, 1 diverged, 1 failed, 1 queued", "1 diverged and 1 failed"):
        assert fact in page
    seed, none = data[data.augment == "seed"]["acc"], data[data.augment == "none"]["acc"]
    test = sps.ttest_ind(seed, none, equal_var=False)
    ci = test.confidence_interval(0.95)
    assert (f"`augment` = `seed` changes final test accuracy by {seed.mean() - none.mean():+.2f} points "
            f"(95% CI {ci.low:+.2f} to {ci.high:+.2f}; Holm-adjusted p ") in page
    best = data.groupby(["augment", "weight_decay", "schedule"])["acc"].mean()
    assert f"Best cell: augment=`{best.idxmax()[0]}`" in page and f"{best.max():.2f}% final test accuracy" in page
    gap = (data.train - data.acc).groupby(data.augment).mean()
    assert f"`none` {gap['none']:+.2f} points, `seed` {gap['seed']:+.2f} points" in page
    reached = data.assign(hit=[any(e["test_acc"] >= 0.98 for e in ep) for ep in data["epochs"]]).groupby(
        ["augment", "weight_decay", "schedule"])["hit"].sum()
    assert f"; {(reached == 0).sum()} of 8 cells never reached it" in page
    for name in GRID_FIGURES:
        assert f"](figures/{name}.png)" in page
    assert "Not drawn" not in page and "One seed per cell" not in page


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
    with Store.open_existing(store_path(results)) as store:
        runs = load_runs(store)
    tables, base, found = grid_tables(runs, parse_baseline("augment=seed,weight-decay=1e-3"), 0.98)
    assert (base, found) == ({"augment": "seed", "weight_decay": "0.001", "schedule": "constant"}, True)
    diffs = tables["vs_baseline"]
    assert len(diffs) == 7 and not ((diffs.augment == "seed") & (diffs.weight_decay == "0.001")
                                    & (diffs.schedule == "constant")).any()
    with pytest.raises(UserError, match="not in the store; cells: augment=none, weight_decay=0, schedule=constant"):
        grid_tables(runs, {"weight_decay": "0.5"}, 0.98)
    with pytest.raises(UserError, match="choose from: augment, weight_decay, schedule"):
        grid_tables(runs, {"lr": "0.1"}, 0.98)
    assert parse_baseline("milestones=10,15,schedule=step") == {"milestones": "10,15", "schedule": "step"}


# ---- degraded inputs ---------------------------------------------------------------------
def test_one_seed_per_cell_reports_without_intervals(tmp_path: Path) -> None:
    build_store(tmp_path, schedules=("step",), seeds=(0,), extras=False)
    page = publish(tmp_path, tmp_path, formats=("md", "csv")).read_text()
    assert not list((tmp_path / "tables").glob("*.tex"))  # only the formats asked for
    cells = pd.read_csv(tmp_path / "tables" / "cells.csv")
    assert (cells["n"] == 1).all() and cells["test_acc_ci_low"].isna().all() and cells["test_acc_std"].isna().all()
    assert pd.read_csv(tmp_path / "tables" / "vs_baseline.csv")["p"].isna().all()
    assert "One seed per cell: no intervals" in page and "No run failed or diverged" in page


def test_one_axis_store_skips_what_it_cannot_draw(tmp_path: Path) -> None:
    build_store(tmp_path, augments=("none", "hflip", "seed"), wds=(0.0,), schedules=("cosine",), seeds=(0, 1),
                extras=False)
    page = publish(tmp_path, tmp_path, formats=("csv",)).read_text()
    assert "*Not drawn: needs weight_decay and schedule to vary" in page
    assert not (tmp_path / "figures" / "heatmap_test_acc.png").exists()
    for name in ("learning_curves_test_acc", "main_effects", "train_vs_test", "lr_schedules"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == PNG
    assert "could not be drawn" not in page and "## Interactions" not in page
    effects = pd.read_csv(tmp_path / "tables" / "main_effects.csv")
    assert effects["axis"].unique().tolist() == ["augment"]
    assert effects["level"].tolist() == ["none", "hflip", "seed"]  # the reference level first


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
    assert (out / "figures" / "bench_transforms.png").read_bytes()[:8] == PNG
    assert "## Throughput" in page and "- cpu: Test CPU (2 logical cores)" in page
    assert "Fastest: `batched tensor` at 24,000 images/s, 30.00× the baseline `torchvision PIL`." in page
    assert "## What was run" not in page


# ---- command line ------------------------------------------------------------------------
def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    proc = python("import sys; from ablations.report import cli; cli()", "--results", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no run store at" in proc.stderr
    Store(store_path(tmp_path / "empty")).close()
    for args, words in ((["--results", str(tmp_path / "empty")], "holds no runs"),
                        (["--results", str(tmp_path / "empty"), "--format", "md,pdf"], "unknown table format"),
                        (["--bench", str(tmp_path / "none.json")], "no benchmark file at")):
        with pytest.raises(SystemExit) as exit_:
            run_cli(lambda args=args: main(args))
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and words in err, err


def test_cli_writes_without_importing_torch(tmp_path: Path) -> None:
    # augment is the only axis; a sample grid written by another module must be linked
    build_store(tmp_path, augments=("none", "seed"), wds=(0.0,), schedules=("constant",), seeds=(0, 1), extras=False)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "augment_samples.png").write_bytes(PNG)
    code = ("import sys; from ablations.report import main; import ablations.report_figures; "
            "assert 'torch' not in sys.modules; main(sys.argv[1:]); assert 'torch' not in sys.modules")
    proc = python(code, "--results", str(tmp_path), "--format", "md", "--bench", str(bench_json(tmp_path / "b.json")),
                  "--baseline", "augment=seed")
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    assert printed[-1] == str(tmp_path / "REPORT.md") and all(Path(p).is_file() for p in printed)
    page = (tmp_path / "REPORT.md").read_text()
    assert "Baseline: augment=seed." in page and "## Throughput" in page
    assert "](figures/augment_samples.png)" in page and "](figures/bench_transforms.png)" in page
