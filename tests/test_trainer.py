import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from ablations.config import TrainConfig, stream_seed
from ablations.models.notebook import build_model
from ablations.run.build import build_run, make_optimizer
from ablations.run.devices import resolve_precision
from ablations.run.loop import train, train_one_epoch

SYNTHETIC = TrainConfig(dataset="synthetic", epochs=3, batch_size=64, device="cpu")


@pytest.mark.capability
def test_synthetic_data_trains_well_above_chance(synthetic):
    result = train(SYNTHETIC, synthetic)
    assert result.status == "done" and len(result.epochs) == 3
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


def test_an_epoch_records_the_rates_it_trained_at_when_the_decay_falls_inside_it(synthetic):
    cfg = dataclasses.replace(SYNTHETIC, epochs=2, schedule="step", milestones=(1.5,))
    run = build_run(cfg, synthetic)
    half = round(1.5 * run.steps_per_epoch) - run.steps_per_epoch  # steps of epoch 2 still at 0.1
    second = train_one_epoch(run, 1)
    expected_mean = (half * 0.1 + (run.steps_per_epoch - half) * 0.01) / run.steps_per_epoch
    assert second["lr"] == pytest.approx(expected_mean) and second["lr_last"] == pytest.approx(0.01)


def test_validation_every_epoch_and_the_test_set_once_on_the_final_model(synthetic):
    result = train(dataclasses.replace(SYNTHETIC, epochs=3), synthetic)
    assert all(e["val_acc"] is not None for e in result.epochs)
    assert [e.get("test_acc") is not None for e in result.epochs] == [False, False, True]
    assert result.best_val_epoch in (1, 2, 3)
    assert result.best_val_acc == max(e["val_acc"] for e in result.epochs)
    assert len(synthetic.val_labels) > 0 and len(synthetic.train_labels) + len(synthetic.val_labels) == 1024


def test_same_seed_other_weight_decay_starts_from_the_same_weights_and_sees_the_same_batches(synthetic):
    """Common random numbers: init and data order have their own streams, shared across cells."""
    def inputs_seen(cfg: TrainConfig) -> tuple[dict, list[float]]:
        run = build_run(cfg, synthetic)
        initial = {k: v.clone() for k, v in run.model.state_dict().items()}
        seen: list[float] = []
        run.model.register_forward_pre_hook(lambda _m, args: seen.append(float(args[0].double().sum())))
        train_one_epoch(run, 0)
        return initial, seen

    base = dataclasses.replace(SYNTHETIC, epochs=1, seed=3)
    weights_a, batches_a = inputs_seen(base)
    weights_b, batches_b = inputs_seen(dataclasses.replace(base, weight_decay=1e-2))
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert batches_a == batches_b and len(batches_a) == len(synthetic.train_labels) // base.batch_size
    weights_c, batches_c = inputs_seen(dataclasses.replace(base, seed=4))
    assert not torch.equal(weights_a["block1.weight"], weights_c["block1.weight"]) and batches_a != batches_c


def test_augmentation_draws_do_not_move_the_data_order_stream(synthetic):
    base = dataclasses.replace(SYNTHETIC, epochs=1, seed=5)
    plain, augmented = build_run(base, synthetic), build_run(dataclasses.replace(base, augment="hflip+rotate"),
                                                              synthetic)
    train_one_epoch(plain, 0)
    train_one_epoch(augmented, 0)
    assert torch.equal(plain.order.get_state(), augmented.order.get_state())
    assert not torch.equal(plain.augment.get_state(), augmented.augment.get_state())  # only this one drew


def test_random_streams_are_distinct_and_follow_the_seed():
    seeds = {stream_seed(s, name) for s in (0, 1) for name in ("init", "order", "augment")}
    assert len(seeds) == 6 and stream_seed(0, "init") == stream_seed(0, "init")


@pytest.mark.parametrize("precision,device,capability,expected", [
    ("auto", "cuda", None, "bf16"),
    ("auto", "cpu", "AMX-BF16", "bf16"),
    ("auto", "cpu", "AVX512-BF16", "bf16"),
    ("auto", "cpu", "AVX2", "fp32"),
    ("auto", "cpu", "AVX512", "fp32"),
    ("auto", "mps", None, "fp32"),
    ("fp32", "cpu", "AMX-BF16", "fp32"),
    ("bf16", "cpu", "AVX2", "bf16"),
])
@pytest.mark.capability
def test_auto_precision_follows_the_hardware(precision, device, capability, expected):
    assert resolve_precision(precision, device, capability) == expected


@pytest.mark.parametrize("overrides", [
    {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},  # what CI sets to run the AVX2 path
    {"ONEDNN_MAX_CPU_ISA": "avx2"},
    {"ATEN_CPU_CAPABILITY": "default"},
])
@pytest.mark.capability
def test_onednn_and_aten_overrides_run_any_cpu_as_one_without_fast_bf16(overrides):
    code = ("from ablations.run.devices import cpu_capability, resolve_precision as r; "
            "print(cpu_capability(), r('auto', 'cpu'))")
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, **overrides}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] not in ("AMX-BF16", "AVX512-BF16") and out[1] == "fp32", out
    if overrides.get("ATEN_CPU_CAPABILITY") == "avx2":
        assert out[0] == "AVX2"


@pytest.mark.capability
def test_a_run_records_the_precision_it_resolved(synthetic):
    result = train(dataclasses.replace(SYNTHETIC, epochs=1, precision="fp32"), synthetic)
    assert result.precision == "fp32"


def test_non_finite_loss_ends_the_run_as_diverged(synthetic):
    result = train(dataclasses.replace(SYNTHETIC, lr=1e12, epochs=3), synthetic)
    assert result.status == "diverged" and result.diverged_epoch == 1
    assert len(result.epochs) == 1 and result.final_test_acc is None


def test_norm_and_bias_parameters_can_skip_weight_decay():
    model = build_model("notebook_resnet_adaptive", in_channels=1, num_classes=10, image_size=28)
    cfg = TrainConfig(weight_decay=5e-4, decay_norm_and_bias=False)
    groups = make_optimizer(model, cfg, torch.device("cpu")).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    everything = make_optimizer(model, TrainConfig(weight_decay=5e-4), torch.device("cpu")).param_groups
    assert len(everything) == 1 and len(everything[0]["params"]) == len(list(model.parameters()))


@pytest.mark.capability
def test_notebook_model_at_96px_with_the_notebook_policy_learns(synthetic):
    cfg = dataclasses.replace(SYNTHETIC, model="notebook_resnet", augment="notebook", epochs=3, batch_size=32)
    small = dataclasses.replace(synthetic, train_images=synthetic.train_images[:512], train_labels=synthetic.train_labels[:512])
    result = train(cfg, small)
    losses = [e["train_loss"] for e in result.epochs]
    assert result.status == "done" and losses[-1] < losses[0] and losses[-1] < 1.5, losses  # chance: ln 10 = 2.3
    assert result.final_test_acc > 0.25, result.epochs  # chance is 0.1


@pytest.mark.slow
def test_compile_trains_across_epochs_without_recompiling(synthetic):
    """Train and eval graphs (BatchNorm in both modes, a ragged last eval batch, inference mode)
    are compiled in epoch 1 and reused after it."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    graphs = []
    cfg = dataclasses.replace(SYNTHETIC, epochs=2, compile=True, eval_batch_size=64)  # 102 val images: ragged
    result = train(cfg, synthetic, on_epoch=lambda m: graphs.append(counters["stats"]["unique_graphs"]))
    assert result.status == "done" and result.final_val_acc > 0.5
    assert graphs[0] >= 2 and graphs[1] == graphs[0], graphs


@pytest.mark.capability
@pytest.mark.slow
def test_bf16_trains_to_fp32_accuracy_within_seed_noise(mnist_small, synthetic):
    """Parity, paired by seed (same weights, same batches): the mean bf16 - fp32 difference of final test
    accuracy lies inside its paired 95% interval's reach of 0 and under a point. Where the CPU runs bf16
    natively the check is on real MNIST (results/precision_parity/ is its published, larger version);
    where bf16 is emulated (about 30 images/s on an AVX2 path, against 1,000 native) it is the smoke
    task, so the bf16 path is still trained and checked there, in a minute rather than a quarter hour."""
    from scipy import stats

    from ablations.run.devices import FAST_BF16_CAPABILITIES, cpu_capability

    if cpu_capability() in FAST_BF16_CAPABILITIES:
        base, data, seeds = TrainConfig(dataset="mnist", train_subset=5000, test_subset=2000, epochs=2,
                                        schedule="step", device="cpu"), mnist_small, (0, 1, 2)
    else:  # one emulated bf16 run of the smoke task: about 30 s on one core
        base, data, seeds = TrainConfig(dataset="synthetic", batch_size=16, epochs=1, schedule="cosine",
                                        device="cpu"), synthetic, (0, 1)
    diffs = []
    for seed in seeds:
        acc = {p: train(dataclasses.replace(base, precision=p, seed=seed), data).final_test_acc
               for p in ("fp32", "bf16")}
        diffs.append(100 * (acc["bf16"] - acc["fp32"]))
    mean = sum(diffs) / len(diffs)
    low, high = stats.t.interval(0.95, len(diffs) - 1, loc=mean, scale=stats.sem(diffs)) if len(set(diffs)) > 1 \
        else (mean, mean)
    assert low <= 0 <= high and abs(mean) < 1.0, diffs


@pytest.mark.slow
def test_real_mnist_subset_reaches_95_percent(mnist_small):
    # the notebook's step decay settles the constant-rate epoch-to-epoch swing of a small subset
    cfg = TrainConfig(dataset="mnist", train_subset=5000, test_subset=2000, epochs=3, schedule="step", device="cpu")
    result = train(cfg, mnist_small)
    assert result.final_test_acc >= 0.95, result.epochs


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablations.train", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_is_strict_when_the_loss_is_not_finite():
    proc = run_cli("--dataset", "synthetic", "--epochs", "1", "--lr", "1e12", "--device", "cpu", "--json")
    assert proc.returncode == 1
    summary = json.loads(proc.stdout.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert summary["status"] == "diverged" and summary["final_train_loss"] is None


def test_cli_prints_one_line_per_epoch_and_a_json_summary_last():
    proc = run_cli("--dataset", "synthetic", "--epochs", "2", "--schedule", "cosine", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[1].startswith("epoch 1/2") and lines[2].startswith("epoch 2/2")
    assert lines[3].startswith("done: test acc")
    summary = json.loads(lines[-1])
    for key in ("status", "final_test_acc", "final_val_acc", "best_val_acc", "final_train_acc", "train_images_per_s",
                "wall_s", "run_id", "precision"):
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
        (["--model", "notebook_resnet", "--image-size", "28"], "error: notebook_resnet needs inputs of at least 52 px"),
        (["--augment", "seed"], "error: augmentation policy 'seed' is now called 'notebook'"),
        (["--model", "seed_resnet"], "error: model 'seed_resnet' is now called 'notebook_resnet'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_cli("--dataset", "synthetic", "--epochs", "1", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
