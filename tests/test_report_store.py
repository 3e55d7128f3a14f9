"""Real run stores with known accuracies, for the report's tests; and checks that they are what
they claim (the columns the trainer writes now, or an old store's, and the grid's meta key).

The store is written through ablations.store.Store. Columns the store may not write yet
(validation metrics, lr_last) are set with SQL afterwards, adding them when the schema lacks
them, so these tests hold before and after the store gains them.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from ablations.config import TrainConfig
from ablations.store.sqlite import Store, new_owner, store_path

PROVENANCE = {"git_commit": "0123456789abcdef", "torch": "2.5.1", "device": "cpu", "device_name": "Test CPU (2 threads)",
              "precision": "fp32", "cpu_capability": "AVX2", "host": "test", "platform": "Linux", "cuda": None,
              "versions": {"python": "3.11"}}
NEW_RUN_COLUMNS = ("final_val_acc", "final_val_loss", "best_val_acc", "best_val_epoch")
NEW_EPOCH_COLUMNS = ("lr_last", "val_loss", "val_acc")
EPOCHS = 3
BATCH = 64


def seed_offset(seed: int) -> float:
    """Shared by every cell of a seed (common random numbers): what pairing by seed removes."""
    return float(np.random.default_rng([99, seed]).normal(0, 0.003))


def final_acc(augment: str, wd: float, schedule: str, seed: int) -> float:
    """Known final test accuracies (fractions): augmentation costs 3 points, a step schedule gains 0.2
    without augmentation and 1.7 with it (an augment x schedule interaction); augmented cells
    spread four times as much between seeds."""
    spread = 0.004 if augment != "none" else 0.001
    noise = np.random.default_rng([len(augment) + 31 * ord(augment[0]), int(wd * 1e4), len(schedule), seed]).normal(
        0, spread)
    step = schedule == "step"
    return (0.985 - 0.03 * (augment == "notebook") + 0.002 * step + 0.015 * step * (augment != "none")
            + 0.0005 * (wd > 0) + seed_offset(seed) + float(noise))


def linear(acc: float, augment: str, e: int, n: int) -> float:
    """Validation accuracy climbing 1 point per epoch to the final test value: never a plateau."""
    return acc - 0.01 * (n - e)


def epochs_for(acc: float, augment: str, n: int = EPOCHS, curve=linear) -> list[dict]:
    """Validation accuracy per epoch from `curve`; test only on the last epoch."""
    train = acc + (0.01 if augment == "none" else -0.005)
    return [{"epoch": e, "lr": 0.1, "lr_last": 0.1, "train_loss": 1 / e, "train_acc": train - 0.01 * (n - e),
             "val_loss": 0.5 / e, "val_acc": curve(acc, augment, e, n), "test_loss": 0.5 / e if e == n else None,
             "test_acc": acc if e == n else None, "seconds": 2.0, "images_per_s": 500.0 + e} for e in range(1, n + 1)]


def _config(augment: str, wd: float, schedule: str, seed: int, epochs: int = EPOCHS) -> TrainConfig:
    return TrainConfig(dataset="synthetic", augment=augment, weight_decay=wd, schedule=schedule, seed=seed,
                       epochs=epochs, batch_size=BATCH)


def build_store(results: Path, augments=("none", "notebook"), wds=(0.0, 1e-3), schedules=("constant", "step"),
                seeds=(0, 1, 2), extras: bool = True, provenance=None, grid_meta: dict | None = None,
                acc=final_acc, budgets=(EPOCHS,), curve=linear) -> dict[str, dict]:
    """A store filled through the real API; returns {run_id: what was written}. Several `budgets`
    (epochs) make a budget pilot; `curve` shapes validation accuracy over the epochs."""
    written = {}
    configs = [_config(a, w, s, k, b) for b in budgets for a in augments for w in wds for s in schedules
               for k in seeds]
    failed = _config(augments[0], wds[0], schedules[0], 7)
    diverged = _config(augments[-1], wds[-1], schedules[-1], 8)
    queued = _config(augments[-1], wds[0], schedules[0], 9)
    with Store(store_path(results)) as store:
        store.enqueue(configs + ([failed, diverged, queued] if extras else []), grid="test")
        owner = new_owner()
        for i, cfg in enumerate(configs):
            final = acc(cfg.augment, cfg.weight_decay, cfg.schedule, cfg.seed)
            epochs = epochs_for(final, cfg.augment, cfg.epochs, curve)
            result = {"status": "done", "epochs": epochs, "wall_s": 6.0 + cfg.seed, "final_test_acc": final,
                      "final_train_acc": epochs[-1]["train_acc"], "final_test_loss": 0.5 / cfg.epochs,
                      "final_val_acc": epochs[-1]["val_acc"], "final_val_loss": epochs[-1]["val_loss"],
                      "best_val_acc": epochs[-1]["val_acc"], "best_val_epoch": cfg.epochs,
                      "train_images_per_s": 500.0 + cfg.seed}
            assert store.claim(cfg.run_id, owner)
            prov = provenance(i) if callable(provenance) else PROVENANCE
            store.finish(cfg.run_id, owner, result, prov)
            written[cfg.run_id] = {"cfg": cfg, **result}
        if extras:
            assert store.claim(failed.run_id, owner)
            store.fail(failed.run_id, owner, "RuntimeError: out of memory (at trainer.py:120)\nTried to allocate 2 GiB")
            assert store.claim(diverged.run_id, owner)
            bad = [{**e, "train_loss": float("nan"), "val_acc": 0.1} for e in epochs_for(0.1, "none", 2)]
            store.finish(diverged.run_id, owner, {"status": "diverged", "epochs": bad, "diverged_epoch": 2,
                                                   "final_test_acc": 0.1, "wall_s": 3.0}, PROVENANCE)
    _write_new_columns(results, written, grid_meta)
    return written


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _write_new_columns(results: Path, written: dict[str, dict], grid_meta: dict | None) -> None:
    with sqlite3.connect(store_path(results)) as db:
        for table, names in (("runs", NEW_RUN_COLUMNS), ("epochs", NEW_EPOCH_COLUMNS)):
            for name in sorted(set(names) - _columns(db, table)):
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} REAL")
        for run_id, w in written.items():
            db.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in NEW_RUN_COLUMNS)} WHERE run_id = ?",
                       (*(w[c] for c in NEW_RUN_COLUMNS), run_id))
            for e in w["epochs"]:
                db.execute("UPDATE epochs SET lr_last = ?, val_loss = ?, val_acc = ?, test_loss = ?, test_acc = ? "
                           "WHERE run_id = ? AND epoch = ?", (e["lr_last"], e["val_loss"], e["val_acc"],
                                                              e["test_loss"], e["test_acc"], run_id, e["epoch"]))
        if grid_meta is not None:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('grid', ?)", (json.dumps(grid_meta),))


def make_old(results: Path) -> None:
    """Turn a store into one written before validation metrics existed: those columns gone."""
    with sqlite3.connect(store_path(results)) as db:
        for table, names in (("runs", NEW_RUN_COLUMNS), ("epochs", NEW_EPOCH_COLUMNS)):
            for name in sorted(set(names) & _columns(db, table)):
                db.execute(f"ALTER TABLE {table} DROP COLUMN {name}")


def frame(written: dict[str, dict]) -> pd.DataFrame:
    """What was written, as the test's own DataFrame (accuracies in percent)."""
    return pd.DataFrame([{"augment": w["cfg"].augment, "weight_decay": f"{w['cfg'].weight_decay:g}",
                          "schedule": w["cfg"].schedule, "seed": w["cfg"].seed, "acc": 100 * w["final_test_acc"],
                          "train": 100 * w["final_train_acc"], "wall_s": w["wall_s"], "epochs": w["epochs"]}
                         for w in written.values()])


# ---- the helper itself -------------------------------------------------------------------
def test_store_holds_the_new_columns_and_the_old_form_lacks_them(tmp_path: Path) -> None:
    written = build_store(tmp_path, wds=(0.0,), schedules=("step",), seeds=(0,), extras=False, grid_meta={"axes": {}})
    with Store.open_existing(store_path(tmp_path)) as store:
        run = store.runs()[0]
        epochs = store.epochs(run["run_id"])
    assert run["final_val_acc"] == written[run["run_id"]]["final_val_acc"] and run["best_val_epoch"] == EPOCHS
    assert [e["test_acc"] is None for e in epochs] == [True] * (EPOCHS - 1) + [False]
    assert all(not math.isnan(e["val_acc"]) for e in epochs)
    make_old(tmp_path)
    with Store.open_existing(store_path(tmp_path)) as store:
        assert "final_val_acc" not in store.runs()[0] and "val_acc" not in store.epochs()[0]
