"""Model throughput on random data (no data pipeline, as nanoGPT's bench.py): the forward pass
under inference_mode, and the train step (forward + backward + SGD step), for the notebook's
ResNet at 96 px and its adaptive-pooling variant at native 28 px.

Grid: batch 64 and 256 (and 1024 on CUDA), fp32 (and bf16 autocast on CUDA), contiguous
(NCHW) and channels_last (NHWC) layouts. Each group's baseline is the notebook's own setting:
batch 64, fp32, NCHW. On 2 CPU cores a 96 px train step at batch 256 takes ~16 s, so the rounds
are sized by time (`budget_s`) and such a step runs once after its warm-up.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablations.config import TrainConfig
from ablations.models import build_model
from ablations.trainer import autocast_for, make_optimizer, train_step
from bench.measure import BASELINE, CANDIDATE, ON_CUDA, dtype_name, flops_per_image, measure, record

MODELS = {"seed_resnet-96px": ("seed_resnet", 96), "seed_resnet_adaptive-28px": ("seed_resnet_adaptive", 28)}
BATCH_SIZES = (64, 256, 1024) if ON_CUDA else (64, 256)
PRECISIONS = ("fp32", "bf16") if ON_CUDA else ("fp32",)  # bf16 autocast on a CPU is not what anyone trains with
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# cuDNN autotunes on the first call of each shape (cudnn.benchmark): two more calls to settle.
WARMUP_CALLS = 3 if ON_CUDA else 1
BUDGET_S = 2.0  # timed seconds per benchmark, at least one round
# With --benchmark-disable (CI) each body runs once to check its path, not its speed: at batch
# 16, as a 96 px train step at batch 256 alone takes 15-30 s on 2 CPU cores.
UNTIMED_BATCH = 16
MAX_ROUNDS = 50  # a CUDA step takes milliseconds: 50 rounds give a stable mean


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("mode", ("forward", "train"))
@pytest.mark.parametrize("model_key", MODELS)
def test_model_step(benchmark, registry, bench_device, peak_flops, model_key, mode, batch_size, precision,
                    memory_format):
    model_name, size = MODELS[model_key]
    batch = min(batch_size, UNTIMED_BATCH) if benchmark.disabled else batch_size  # images per call
    layout = MEMORY_FORMATS[memory_format]
    benchmark.group = f"model-{model_key}-{mode}"
    model = build_model(model_name, in_channels=1, num_classes=10, image_size=size)
    model = model.to(bench_device, memory_format=layout)
    # inputs as the policies produce them: normalized floats in the model's layout
    x = torch.randn(batch, 1, size, size, device=bench_device).contiguous(memory_format=layout)
    y = torch.randint(10, (batch,), device=bench_device)
    cfg = TrainConfig(model=model_name, lr=0.1, precision=precision)
    autocast = autocast_for(cfg, bench_device)

    if mode == "train":
        optimizer = make_optimizer(model, cfg, bench_device)
        loss_fn = nn.CrossEntropyLoss()
        model.train()

        def step() -> torch.Tensor:
            return train_step(model, optimizer, loss_fn, x, y, autocast)[0]
    else:
        model.eval()

        def step() -> torch.Tensor:
            with torch.inference_mode(), autocast:
                return model(x)

    timing = measure(benchmark, step, device=bench_device, images=batch, budget_s=BUDGET_S,
                     max_rounds=MAX_ROUNDS, warmup_calls=WARMUP_CALLS)
    dtype = dtype_name(autocast)
    notebook_setting = batch_size == 64 and precision == "fp32" and memory_format == "contiguous"
    info = record(
        benchmark, registry, suite="model", variant=f"b{batch_size} {precision} {memory_format}",
        role=BASELINE if notebook_setting else CANDIDATE, timing=timing, batch_size=batch,
        device=bench_device, dtype=dtype, memory_format=memory_format,
        flops_per_image=flops_per_image(model_name, size, train=mode == "train"), peak_flops_per_s=peak_flops(dtype),
    )
    assert info["images_per_s"] > 0 and info["achieved_flops_per_s"] > 0
    assert torch.isfinite(timing.result).all()  # the timed work computed something real
