"""What the suite's data path is measured against, and the step every suite times.

- `v2_compose`: a policy's random steps as torchvision.transforms.v2 on one uint8 tensor, the
  modern per-sample alternative to the notebook's PIL Compose (`Policy.reference_train()`).
- `mnist_loader`: the notebook's input pipeline: torchvision MNIST (a PIL image per sample),
  a per-sample transform, a shuffled DataLoader.
- `notebook_epoch`: the notebook's training loop over such a loader, reading the loss and the
  accuracy back to the host every step as the notebook does.
- `bare_epoch`: the same steps on one pre-made batch: the model's cost with no data pipeline.
- `worker_threads`: the one intra-op thread a DataLoader worker runs its transforms with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import InterpolationMode, v2

from ablations.augment import Policy
from ablations.data import balanced_indices, resolve_data_root
from ablations.trainer import train_step

BILINEAR = InterpolationMode.BILINEAR


def v2_compose(policy: Policy) -> v2.Compose:
    """uint8 (C, H, W) tensor in, normalized float32 out; each call draws new parameters.

    Mirrors `ablations.augment_reference.random_transforms` step for step, so the two per-sample
    pipelines do the same work (bilinear rotation, one ColorJitter per photometric op)."""
    steps = [_v2_step(step) for step in policy.steps]
    half = (0.5,) * policy.channels  # the notebook's Normalize(0.5, 0.5)
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(half, half)])


def _v2_step(step) -> nn.Module:
    kind = step.kind
    if kind == "resize":
        return v2.Resize(step.size_out, interpolation=BILINEAR, antialias=True)
    if kind == "hflip":
        return v2.RandomHorizontalFlip(0.5)
    if kind == "vflip":
        return v2.RandomVerticalFlip(0.5)
    if kind == "crop":
        return v2.RandomCrop(step.size_out, padding=step.padding or None)
    if kind == "center_crop":
        return v2.CenterCrop(step.size_out)
    if kind == "rotate":
        return v2.RandomRotation(step.degrees, interpolation=BILINEAR, fill=0)
    if kind in ("brightness", "contrast", "hue"):
        return v2.ColorJitter(**{kind: step.strength})
    raise AssertionError(f"no torchvision v2 step for {kind!r}")


@contextmanager
def worker_threads() -> Iterator[None]:
    """One intra-op thread, as torch sets in every DataLoader worker process. Per-sample
    transforms are many tiny ops, which more threads slow down: a 28 px v2 rotation took
    ~15 ms with 2 threads and ~2 ms with 1 on a shared 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mnist_loader(policy: Policy, n: int, *, batch_size: int, num_workers: int, seed: int = 0,
                 drop_last: bool = False) -> DataLoader:
    """torchvision MNIST train split with `policy.reference_train()` per image, shuffled.

    The first n images are the class-balanced subset `load_dataset(train_subset=n)` holds, so
    the device-resident and the notebook pipelines see the same images. Workers persist across
    epochs: their start-up is paid in the warm-up, as a long training run pays it once."""
    root = resolve_data_root(None)
    dataset = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=policy.reference_train())
    if n < len(dataset):
        dataset = Subset(dataset, balanced_indices(dataset.targets, n, len(dataset.classes)).tolist())
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=drop_last,
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed),
    )


def notebook_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, loader: DataLoader, *,
                   device: torch.device, autocast, memory_format: torch.memory_format) -> dict:
    model.train()
    loss_sum, correct, n = 0.0, 0, 0
    for images, labels in loader:
        x = images.to(device).contiguous(memory_format=memory_format)
        y = labels.to(device)
        loss, logits = train_step(model, optimizer, loss_fn, x, y, autocast)
        # the notebook's running sums: two host syncs per step
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"train_loss": loss_sum / n, "train_acc": correct / n}


def bare_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor,
               y: torch.Tensor, *, steps: int, autocast) -> dict:
    """`steps` train steps on one batch already on the device: the ceiling any data path can reach."""
    model.train()
    loss_sum = torch.zeros((), device=x.device)
    for _ in range(steps):
        loss, _ = train_step(model, optimizer, loss_fn, x, y, autocast)
        loss_sum += loss.float()
    return {"train_loss": loss_sum.item() / steps}  # one sync per epoch, as train_one_epoch
