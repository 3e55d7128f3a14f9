import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from ablations.config import TrainConfig
from ablations.models import build_model
from ablations.trainer import make_optimizer, train

SYNTHETIC = TrainConfig(dataset="synthetic", epochs=2, batch_size=64, device="cpu")


def test_synthetic_data_trains_well_above_chance(synthetic):
    result = train(SYNTHETIC, synthetic)
    assert result.status == "done" and len(result.epochs) == 2
    assert result.final_test_acc > 0.90  # chance is 0.10
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    assert result.train_images_per_s > 0 and result.wall_s > 0 and result.peak_memory_bytes > 0


def test_same_seed_gives_identical_metrics_on_cpu(synthetic):
    cfg = dataclasses.replace(SYNTHETIC, epochs=1, augment="hflip+rotate", train_subset=None)
    first, second = train(cfg, synthetic), train(cfg, synthetic)
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [first.epochs[0][k] for k in keys] == [second.epochs[0][k] for k in keys]
    third = train(dataclasses.replace(cfg, seed=1), synthetic)
    assert third.epochs[0]["train_loss"] != first.epochs[0]["train_loss"]


def test_schedule_drives_the_optimizer_lr(synthetic):
    cfg = dataclasses.replace(SYNTHETIC, epochs=4, schedule="step", milestones=(2,), train_subset=None)
    result = train(cfg, synthetic)
    assert [e["lr"] for e in result.epochs] == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_non_finite_loss_ends_the_run_as_diverged(synthetic):
    result = train(dataclasses.replace(SYNTHETIC, lr=1e12, epochs=3), synthetic)
    assert result.status == "diverged" and result.diverged_epoch == 1
    assert len(result.epochs) == 1 and result.final_test_acc is None


def test_norm_and_bias_parameters_can_skip_weight_decay():
    model = build_model("seed_resnet_adaptive", in_channels=1, num_classes=10, image_size=28)
    cfg = TrainConfig(weight_decay=5e-4, decay_norm_and_bias=False)
    groups = make_optimizer(model, cfg, torch.device("cpu")).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    everything = make_optimizer(model, TrainConfig(weight_decay=5e-4), torch.device("cpu")).param_groups
    assert len(everything) == 1 and len(everything[0]["params"]) == len(list(model.parameters()))


def test_seed_model_at_96px_with_the_seed_policy_trains(synthetic):
    cfg = dataclasses.replace(SYNTHETIC, model="seed_resnet", augment="seed", epochs=1, channels_last=True)
    small = dataclasses.replace(synthetic, train_images=synthetic.train_images[:256], train_labels=synthetic.train_labels[:256])
    result = train(cfg, small)
    assert result.status == "done" and 0.0 <= result.final_test_acc <= 1.0


@pytest.mark.slow
def test_real_mnist_subset_reaches_95_percent(mnist_small):
    cfg = TrainConfig(dataset="mnist", train_subset=5000, test_subset=2000, epochs=2, device="cpu")
    result = train(cfg, mnist_small)
    assert result.final_test_acc >= 0.95, result.epochs


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablations.train", *args], capture_output=True, text=True, timeout=300)


def test_cli_prints_one_line_per_epoch_and_a_json_summary_last():
    proc = run_cli("--dataset", "synthetic", "--epochs", "2", "--schedule", "cosine", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[1].startswith("epoch 1/2") and lines[2].startswith("epoch 2/2")
    assert lines[3].startswith("done: test acc")
    summary = json.loads(lines[-1])
    for key in ("status", "final_test_acc", "final_train_acc", "train_images_per_s", "wall_s", "run_id"):
        assert key in summary
    assert summary["status"] == "done" and summary["final_test_acc"] > 0.5
    assert summary["config"]["schedule"] == "cosine"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--augment", "mixup"], "error: unknown augmentation policy 'mixup'; choose one of:"),
        (["--weight-decay", "-1"], "error: weight-decay must be 0 or more, got -1.0"),
        (["--batch-size", "0"], "error: batch-size must be above 0, got 0"),
        (["--dataset", "mnist", "--train-subset", "70000"], "error: train-subset 70000 is larger than the mnist train split"),
        (["--model", "seed_resnet", "--image-size", "28"], "error: seed_resnet needs inputs of at least 52 px"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_cli("--dataset", "synthetic", "--epochs", "1", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
