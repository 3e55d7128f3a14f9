"""Model throughput on one pre-made batch (no data pipeline, as nanoGPT's bench.py): the forward
pass under inference_mode, and the trainer's `train_step` (forward + backward + SGD step), for the
notebook's ResNet at 96 px and its adaptive-pooling variant at native 28 px, and any torchvision or
timm model named in $ABLATIONS_BENCH_MODELS ("torchvision:resnet18,timm:resnet18@32": NAME or
NAME@PX, at MNIST's native 28 px unless given), built as `--model` builds it.

Each benchmark sets its run up with `build_run`, so it times the model, memory format, optimizer
and autocast the grid trains with. Grid: batch 64 and 256 (and 1024 on CUDA); fp32, and bf16
autocast where the hardware runs bf16 natively (CUDA, CPUs with AMX-BF16 or AVX512-BF16); NCHW
(contiguous) and NHWC (channels_last). Each group's baseline is the notebook's own setting: batch
64, fp32, NCHW; utilization is held against the peak of the precision used. On 2 CPU cores a
96 px fp32 train step at batch 256 takes ~16 s, so rounds are sized by time (`BUDGET_S`).
"""

from __future__ import annotations

import os

import pytest
import torch

from ablations.config import check_model
from ablations.errors import UserError
from ablations.models.notebook import count_parameters
from ablations.run.loop import train_step
from bench.measure import measure
from bench.peaks import flops_per_image
from bench.record import BASELINE, CANDIDATE, record
from bench.runs import MEMORY_FORMATS, ON_CUDA, PEAK_DTYPE, PRECISIONS, bench_run

MODELS_ENV = "ABLATIONS_BENCH_MODELS"
MNIST_SIZE = 28


def named_models(spec: str) -> dict[str, tuple[str, int]]:
    """{"NAME-PXpx": (NAME, PX)} from "NAME[@PX],..." ($ABLATIONS_BENCH_MODELS)."""
    models = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, at, size = item.partition("@")
        check_model(name)
        if at and not size.isdigit():
            raise UserError(f"{MODELS_ENV}: {item!r} is not NAME or NAME@PX (e.g. torchvision:vit_b_16@224)")
        px = int(size) if at else MNIST_SIZE
        models[f"{name}-{px}px"] = (name, px)
    return models


MODELS = {
    "notebook_resnet-96px": ("notebook_resnet", 96),
    "notebook_resnet_adaptive-28px": ("notebook_resnet_adaptive", 28),
    **named_models(os.environ.get(MODELS_ENV, "")),
}
BATCH_SIZES = (64, 256, 1024) if ON_CUDA else (64, 256)
# cuDNN autotunes on the first call of each shape (cudnn.benchmark): two more calls to settle.
WARMUP_CALLS = 3 if ON_CUDA else 1
BUDGET_S = 2.0  # timed seconds per benchmark, at least one round
# With --benchmark-disable (CI) each body runs once to check its path, not its speed: at batch
# 16, as a 96 px train step at batch 256 alone takes 15-30 s on 2 CPU cores.
UNTIMED_BATCH = 16
MAX_ROUNDS = 50  # a CUDA step takes milliseconds: 50 rounds give a stable median


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("mode", ("forward", "train"))
@pytest.mark.parametrize("model_key", MODELS)
def test_model_step(benchmark, registry, bench_device, mnist, peak, model_key, mode, batch_size, precision,
                    memory_format):
    model_name, size = MODELS[model_key]
    batch = min(batch_size, UNTIMED_BATCH) if benchmark.disabled else batch_size  # images per call
    benchmark.group = f"model-{model_key}-{mode}"
    run = bench_run(mnist(max(BATCH_SIZES)), model=model_name, image_size=size, batch_size=batch,
                    precision=precision, memory_format=memory_format)
    assert run.precision == precision  # an explicit precision is never re-resolved
    # real digits, as the policy hands them to the model: normalized floats in the run's layout
    x, y = run.batch(torch.arange(batch, device=run.device))

    if mode == "train":
        run.model.train()

        def step() -> torch.Tensor:
            return train_step(run, x, y)[0]
    else:
        run.model.eval()

        def step() -> torch.Tensor:
            with torch.inference_mode(), run.autocast():
                return run.forward(x)

    timing, peak_flops_per_s = peak.bracket(
        PEAK_DTYPE[run.precision],
        lambda: measure(benchmark, step, device=bench_device, images=batch, budget_s=BUDGET_S,
                        max_rounds=MAX_ROUNDS, warmup_calls=WARMUP_CALLS),
        timed=not benchmark.disabled,
    )
    notebook_setting = batch_size == 64 and precision == "fp32" and memory_format == "contiguous"
    info = record(
        benchmark, registry, suite="model", variant=f"b{batch_size} {precision} {memory_format}",
        role=BASELINE if notebook_setting else CANDIDATE, timing=timing, batch_size=batch, img_size=size,
        device=bench_device, precision=run.precision, memory_format=memory_format,
        param_count=count_parameters(run.model), mode=mode,
        flops_per_image=flops_per_image(model_name, size, train=mode == "train"), peak_flops_per_s=peak_flops_per_s,
    )
    assert info["images_per_s"] > 0 and info["achieved_flops_per_s"] > 0
    assert torch.isfinite(timing.result).all()  # the timed work computed something real
