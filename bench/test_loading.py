"""Input pipeline throughput, images/s from the dataset to a batch on the training device:

- DataLoader w=0 / w=2: torchvision MNIST (a PIL image per sample) with the notebook's
  transform, batch 64, shuffled, 0 workers (the notebook's default, the group's baseline) or 2
  worker processes; each batch is then copied to the device as the notebook's loop does;
- device-resident: the suite's path, an index gather from the uint8 images already on the
  device plus the batched policy, as `train_one_epoch` does before the model.

Two transforms: `none` (ToTensor + Normalize at 28 px) and `notebook` (the notebook's
Resize(120) -> RandomHorizontalFlip -> RandomCrop(96) train transform).

Every variant's main process runs with the same torch threads (recorded as num_threads); a
DataLoader worker process gets one thread of its own (num_workers is recorded too).
"""

from __future__ import annotations

import pytest
import torch

from ablations.augment.policy import build_policy
from bench.baselines import mnist_loader
from bench.measure import measure
from bench.record import BASELINE, CANDIDATE, record

TRANSFORMS = {"none": 28, "notebook": 96}  # policy -> output size (px)
VARIANTS = {"DataLoader w=0": 0, "DataLoader w=2": 2, "device-resident": None}  # -> worker processes
BATCH = 64  # the notebook's training batch
IMAGES = 2048  # per call: 32 batches, ~1 s of PIL work for `notebook` on one CPU core
IMAGES_UNTIMED = 256  # with --benchmark-disable: 4 batches, enough to run every path
BUDGET_S = 2.0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("policy_name", TRANSFORMS)
def test_loading(benchmark, registry, bench_device, mnist, policy_name, variant):
    benchmark.group = f"loading-{policy_name}"
    n = IMAGES_UNTIMED if benchmark.disabled else IMAGES
    out_size = TRANSFORMS[policy_name]
    policy = build_policy(policy_name, native_size=28, out_size=out_size, channels=1)
    workers = VARIANTS[variant]

    if workers is not None:
        loader = mnist_loader(policy, n, batch_size=BATCH, num_workers=workers)

        def epoch() -> list[tuple[torch.Size, torch.Size]]:
            shapes = []
            for images, labels in loader:
                x, y = images.to(bench_device), labels.to(bench_device)
                shapes.append((x.shape, y.shape))
            return shapes
    else:
        data = mnist(n)
        generator = torch.Generator(device=bench_device).manual_seed(0)

        def epoch() -> list[tuple[torch.Size, torch.Size]]:
            shapes = []
            order = torch.randperm(n, generator=generator, device=bench_device)
            for begin in range(0, n, BATCH):
                idx = order[begin : begin + BATCH]
                x, y = policy(data.train_images[idx], generator), data.train_labels[idx]
                shapes.append((x.shape, y.shape))
            return shapes

    timing = measure(benchmark, epoch, device=bench_device, images=n, budget_s=BUDGET_S)
    record(
        benchmark, registry, suite="loading", variant=variant,
        role=BASELINE if variant == "DataLoader w=0" else CANDIDATE, timing=timing, batch_size=BATCH,
        img_size=out_size, device=bench_device, num_workers=workers or 0,
    )
    assert timing.result == [((BATCH, 1, out_size, out_size), (BATCH,))] * (n // BATCH)  # every batch, whole
