"""One training epoch over a fixed real-MNIST subset, three ways, in the notebook's setting
(SGD lr 0.1, batch 64, `seed` augmentation):

- notebook loop: torchvision MNIST Subset of the same images, DataLoader(batch 64, shuffled,
  0 workers), per-sample PIL `policy.reference_train()`, loss and accuracy read every step
  (the group's baseline);
- suite train_one_epoch: the trainer's loop on device-resident uint8 data with the batched policy;
- bare step: the same number of train steps on one pre-made batch, no data pipeline.

All three train the same model with the same optimizer. The notebook loop keeps the notebook's
own execution (fp32, contiguous NCHW); the suite and the bare step use the suite's defaults
(channels_last, and bf16 autocast on CUDA). So speedup_vs_notebook = suite / notebook images/s
is what a user gains by moving from the notebook to the suite, and the data pipeline's
overhead = 1 - fraction_of_bare_step = 1 - epoch images/s / bare-step images/s compares two
runs that differ only in how batches arrive.

Two groups: epoch-96px (the notebook's ResNet) and epoch-28px (its adaptive variant at native
size, the CPU grids' configuration).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablations.augment import build_policy
from ablations.config import TrainConfig
from ablations.models import build_model
from ablations.schedules import schedule_for
from ablations.trainer import autocast_for, make_optimizer, train_one_epoch, train_step
from bench.baselines import bare_epoch, mnist_loader, notebook_epoch
from bench.measure import BARE_STEP, BASELINE, CANDIDATE, ON_CUDA, dtype_name, flops_per_image, measure, record

SETTINGS = {"96px": ("seed_resnet", 96), "28px": ("seed_resnet_adaptive", 28)}
VARIANTS = ("notebook loop", "suite train_one_epoch", BARE_STEP)
BATCH = 64
# Images per epoch: all of MNIST on a GPU. On 2 CPU cores a 96 px step takes about 1.7 s and a
# 28 px step about 0.2 s: 16 and 64 steps keep each epoch under ~30 s, and long enough that one
# slow step does not swing the ratios (4 steps gave the suite 1.12x the bare step, noise).
EPOCH_IMAGES = {"96px": 60_000, "28px": 60_000} if ON_CUDA else {"96px": 1024, "28px": 4096}
EPOCH_IMAGES_UNTIMED = BATCH  # with --benchmark-disable: one step runs every path
ROUNDS = 2 if ON_CUDA else 1  # epochs timed after a one-step warm-up


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_epoch(benchmark, registry, bench_device, mnist, peak_flops, setting, variant):
    benchmark.group = f"epoch-{setting}"
    model_name, size = SETTINGS[setting]
    notebook = variant == "notebook loop"
    # the notebook trains in fp32 on contiguous NCHW tensors
    cfg = TrainConfig(model=model_name, image_size=size, augment="seed", lr=0.1, batch_size=BATCH,
                      channels_last=not notebook, precision="fp32" if notebook else "auto")
    n = EPOCH_IMAGES_UNTIMED if benchmark.disabled else EPOCH_IMAGES[setting]
    steps = n // BATCH
    data = mnist(n)
    policy = build_policy(cfg.augment, native_size=data.native_size, out_size=size, channels=data.channels)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(model_name, in_channels=data.channels, num_classes=data.num_classes, image_size=size)
    model = model.to(bench_device, memory_format=layout)
    optimizer = make_optimizer(model, cfg, bench_device)
    loss_fn = nn.CrossEntropyLoss()
    autocast = autocast_for(cfg, bench_device)
    generator = torch.Generator(device=bench_device).manual_seed(cfg.seed)
    # one augmented batch: the warm-up step of every variant and the bare step's input
    x = policy(data.train_images[:BATCH], generator).contiguous(memory_format=layout)
    y = data.train_labels[:BATCH]

    if notebook:
        loader = mnist_loader(policy, n, batch_size=BATCH, num_workers=0, seed=cfg.seed, drop_last=True)

        def epoch() -> dict:
            return notebook_epoch(model, optimizer, loss_fn, loader, device=bench_device, autocast=autocast,
                                  memory_format=layout)
    elif variant == "suite train_one_epoch":
        lr_at = schedule_for(cfg, steps)

        def epoch() -> dict:
            return train_one_epoch(model, optimizer, loss_fn, data, policy, batch_size=BATCH, lr_at=lr_at,
                                   first_step=0, generator=generator, autocast=autocast, memory_format=layout)
    else:
        def epoch() -> dict:
            return bare_epoch(model, optimizer, loss_fn, x, y, steps=steps, autocast=autocast)

    timing = measure(benchmark, epoch, device=bench_device, images=steps * BATCH, rounds=ROUNDS,
                     warmup=lambda: train_step(model, optimizer, loss_fn, x, y, autocast))
    dtype = dtype_name(autocast)
    record(
        benchmark, registry, suite="epoch", variant=variant, role=BASELINE if notebook else CANDIDATE,
        timing=timing, batch_size=BATCH, device=bench_device, dtype=dtype,
        memory_format="channels_last" if cfg.channels_last else "contiguous",
        flops_per_image=flops_per_image(model_name, size, train=True), peak_flops_per_s=peak_flops(dtype),
    )
    assert torch.isfinite(torch.tensor(timing.result["train_loss"]))
