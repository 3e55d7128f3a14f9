"""Augmentation throughput, images/s, for each policy on real MNIST digits:

- notebook PIL: `policy.reference_train()` on PIL images one by one, what a DataLoader worker
  of the notebook does per sample (the group's baseline);
- torchvision v2: the same steps with transforms.v2 on uint8 tensors, one by one, on the CPU;
  both per-sample paths run with one torch thread, as a DataLoader worker does;
- suite batched: `policy(images, generator)`, one call for the whole batch on the device, each
  sample with its own random parameters.

`seed` goes from 28 px to the notebook's 96 px; the other policies stay at 28 px.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ablations.augment import build_policy
from bench.baselines import v2_compose, worker_threads
from bench.measure import BASELINE, CANDIDATE, measure, record

POLICIES = ("none", "seed", "crop", "hflip", "rotate", "brightness", "contrast")
VARIANTS = ("notebook PIL", "torchvision v2", "suite batched")
IMAGES = 512  # per call: 8 of the notebook's batches; PIL needs ~0.25 s for them on one CPU core
BUDGET_S = 1.5


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("policy_name", POLICIES)
def test_transform(benchmark, registry, bench_device, mnist, policy_name, variant):
    benchmark.group = f"transforms-{policy_name}"
    out_size = 96 if policy_name == "seed" else 28
    policy = build_policy(policy_name, native_size=28, out_size=out_size, channels=1)
    images = mnist(IMAGES).train_images  # uint8 (N, 1, 28, 28) on the device

    if variant == "notebook PIL":
        compose = policy.reference_train()
        pil_images = [Image.fromarray(image[0].numpy()) for image in images.cpu()]

        def augment() -> torch.Tensor:
            with worker_threads():
                return torch.stack([compose(image) for image in pil_images])
    elif variant == "torchvision v2":
        compose = v2_compose(policy)
        host_images = list(images.cpu())

        def augment() -> torch.Tensor:
            with worker_threads():
                return torch.stack([compose(image) for image in host_images])
    else:
        generator = torch.Generator(device=bench_device).manual_seed(0)

        def augment() -> torch.Tensor:
            return policy(images, generator)

    timing = measure(benchmark, augment, device=bench_device, images=IMAGES, budget_s=BUDGET_S)
    batched = variant == "suite batched"  # the per-sample pipelines run on the host CPU
    record(
        benchmark, registry, suite="transforms", variant=variant,
        role=BASELINE if variant == "notebook PIL" else CANDIDATE, timing=timing,
        batch_size=IMAGES if batched else 1, device=bench_device if batched else torch.device("cpu"),
    )
    out = timing.result
    assert out.shape == (IMAGES, 1, out_size, out_size) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0  # normalized as the notebook: [0, 1] -> [-1, 1]
