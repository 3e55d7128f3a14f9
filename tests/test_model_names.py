"""Models by name: torchvision:NAME and timm:NAME train through the suite's own CLI, grid and store,
adapted to the dataset's channels and classes; bad names and sizes are one-line errors (a grid's
stop before its store exists, and a missing timm, are rows of tests/test_faults.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ablations.errors import UserError
from ablations.models.input_probe import check_input_size
from ablations.models.notebook import build_model, count_parameters
from ablations.store.sqlite import Store, store_path

pytest.importorskip("timm", reason="timm models are the optional `timm` extra (in `test` too)")

REPO = Path(__file__).resolve().parents[1]
# two steps of 64 images: the point is the path through the trainer, not the accuracy
TINY = ("--dataset", "synthetic", "--epochs", "1", "--train-subset", "128", "--test-subset", "64",
        "--val-subset", "64", "--batch-size", "64")


def python(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("model", ["torchvision:resnet18", "timm:resnet18"])
def test_train_cli_trains_a_library_model_and_reports_it(model):
    proc = python("-m", "ablations.train", *TINY, "--model", model, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs_run"] == 1
    assert summary["config"]["model"] == model  # the name as given, in the stored config and run id
    assert 0.0 <= summary["final_test_acc"] <= 1.0 and summary["final_train_loss"] > 0
    # ResNet-18 has 11,689,512 parameters with an RGB stem and 1,000 classes; here 2 x 64 x 7 x 7 stem
    # weights and 990 x 513 head weights and biases fewer
    assert summary["param_count"] == 11_175_370


@pytest.mark.parametrize("model", ["torchvision:resnet18", "timm:resnet18"])
def test_first_layer_takes_the_datasets_channels_and_the_head_gives_its_classes(model):
    gray = build_model(model, in_channels=1, num_classes=7, image_size=28)
    assert gray.conv1.in_channels == 1 and gray.fc.out_features == 7
    assert gray(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    rgb = build_model(model, in_channels=3, num_classes=7, image_size=32)
    assert rgb.conv1.in_channels == 3 and rgb(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert count_parameters(rgb) - count_parameters(gray) == 2 * 64 * 7 * 7  # two more input planes of the stem


def test_the_adapted_torchvision_stem_keeps_the_models_own_initialization():
    torch.manual_seed(0)
    rgb = build_model("torchvision:resnet18", in_channels=3, num_classes=10, image_size=28)
    torch.manual_seed(0)
    gray = build_model("torchvision:resnet18", in_channels=1, num_classes=10, image_size=28)
    # the same draws (the size check runs on the meta device and draws nothing), the first channel kept
    assert torch.equal(gray.conv1.weight, rgb.conv1.weight[:, :1])
    assert torch.equal(gray.fc.weight, rgb.fc.weight)


@pytest.mark.capability
def test_the_trainers_step_fits_a_batch_in_bf16_channels_last(synthetic):
    from ablations.config import TrainConfig
    from ablations.run.build import build_run
    from ablations.run.loop import train_step

    cfg = TrainConfig(dataset="synthetic", model="torchvision:resnet18", batch_size=16, lr=0.05, momentum=0.9,
                      precision="bf16", channels_last=True, device="cpu")
    run = build_run(cfg, synthetic)
    assert run.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x, y = run.batch(torch.arange(16))
    run.model.train()
    losses = [float(train_step(run, x, y)[0]) for _ in range(6)]
    assert losses[-1] < 0.5 * losses[0], losses  # it learns through the suite's own autocast step


@pytest.mark.parametrize(
    "model,message",
    [
        ("keras:resnet18", "error: unknown model source 'keras' in 'keras:resnet18'; choose one of: torchvision, timm"),
        ("resnet18", "error: unknown model 'resnet18'; choose one of: notebook_resnet, notebook_resnet_adaptive, "
                     "torchvision:NAME, timm:NAME; list them with: ablations train --list-models"),
        ("timm:", "error: model 'timm:' names no timm model (e.g. timm:resnet18)"),
        ("torchvision:resnet19", "error: unknown torchvision model 'resnet19'; close matches: torchvision:resnet18"),
        ("timm:resnt18", "error: unknown timm model 'resnt18'; close matches: timm:resnet18"),
    ],
)
def test_bad_model_names_are_one_line_errors(model, message):
    line = one_error_line(python("-m", "ablations.train", *TINY, "--model", model))
    assert line.startswith(message), line
    if model.partition(":")[0] in ("torchvision", "timm") and model.partition(":")[2]:
        assert line.endswith(f"list them with: ablations train --list-models '{model.partition(':')[0]}:*'")


def test_a_model_built_for_one_size_names_it():
    line = one_error_line(python("-m", "ablations.train", *TINY, "--model", "torchvision:vit_b_16"))
    assert line == "error: torchvision:vit_b_16 takes 224 px inputs, got 28 px; set --image-size 224"


def test_a_model_that_downsamples_too_far_states_its_minimum_size():
    with pytest.raises(UserError, match=r"^torchvision:alexnet needs inputs of at least 63 px, got 28 px; "
                                        r"set --image-size 63 \(or more\)$"):
        build_model("torchvision:alexnet", in_channels=1, num_classes=10, image_size=28)
    # and the bound is real: at 63 px it runs, one pixel below it cannot
    model = build_model("torchvision:alexnet", in_channels=1, num_classes=10, image_size=63).eval()
    assert model(torch.zeros(1, 1, 63, 63)).shape == (1, 10)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 1, 62, 62))


class ReadsAValueBack(nn.Module):
    """A classifier that reads a value back in its forward, as some do: the meta device cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 5), nn.Linear(4, 10)  # the 5x5 conv needs at least 5 px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x).mean((2, 3))
        return self.head(features / (float(features.abs().max()) + 1.0))


def test_a_model_the_meta_device_cannot_run_is_tried_on_the_cpu():
    model = ReadsAValueBack()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_input_size(model, "reads_back", in_channels=1, num_classes=10, size=28)  # runs on the CPU: no error
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # and the try changed nothing
    with pytest.raises(UserError, match=r"^reads_back cannot run on 1-channel 4 px inputs: .*[Kk]ernel size"):
        check_input_size(model, "reads_back", in_channels=1, num_classes=10, size=4)


def test_list_models_prints_every_source_and_filters_by_pattern():
    from ablations.models.zoo import model_names

    names = model_names()
    assert {"notebook_resnet", "notebook_resnet_adaptive", "torchvision:vit_b_16", "timm:convnext_atto"} <= set(names)
    assert "torchvision:fasterrcnn_resnet50_fpn" not in names  # a detector: not a classifier of images
    picked = python("-m", "ablations.train", "--list-models", "resnet18")
    assert picked.returncode == 0 and picked.stdout.split() == ["torchvision:resnet18", "timm:resnet18"]


def test_a_grid_stores_the_model_name_as_given_with_its_parameter_count(results_dir):
    proc = python("-m", "ablations.run_grid", "--grid", "smoke", "--results", str(results_dir), "--workers", "1",
                  "--seeds", "1", "--only", "augment=none", "--only", "weight_decay=0", "--no-report",
                  "--set", "model=timm:resnet18", "--set", "train_subset=64", "--set", "val_subset=32",
                  "--set", "test_subset=64", "--set", "precision=fp32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Store.open_existing(store_path(results_dir)) as store:
        (run,) = store.runs()
    assert run["status"] == "done" and run["config"]["model"] == "timm:resnet18"
    assert run["provenance"]["param_count"] == 11_175_370
    assert run["provenance"]["versions"]["timm"]  # a timm model is defined by the timm that built it


def test_config_checks_the_form_without_importing_torch():
    script = ("import sys; from ablations.config import TrainConfig; from ablations.errors import UserError\n"
              "assert TrainConfig(model=' timm:resnet18'.strip()).model == 'timm:resnet18'\n"
              "try:\n    TrainConfig(model='onnx:resnet18')\nexcept UserError as err:\n    print(err)\n"
              "assert 'torch' not in sys.modules, 'config imported torch'")
    proc = python("-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("unknown model source 'onnx'")
