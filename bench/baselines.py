"""What the suite's data path is measured against, and the loops the epoch suite times.

- `v2_compose`: a policy's random steps as torchvision.transforms.v2 on one uint8 tensor, the
  modern per-sample alternative to the notebook's PIL Compose (`Policy.reference_train()`).
- `mnist_loader`: the notebook's input pipeline: torchvision MNIST (a PIL image per sample),
  a per-sample transform, a shuffled DataLoader.
- `notebook_epoch`: the notebook's training loop over such a loader, reading the loss and the
  accuracy back to the host every step as the notebook does. Its model, optimizer and step are
  a `Run` from `build_run` (fp32, NCHW: how the notebook trains); only the data path is its own.
- `bare_epoch`: the same steps on one pre-made batch: the model's cost with no data pipeline.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import InterpolationMode, v2

from ablations.augment.policy import Policy
from ablations.data.dataset import balanced_indices
from ablations.data.root import resolve_data_root
from ablations.run.build import Run
from ablations.run.loop import train_step

BILINEAR = InterpolationMode.BILINEAR


def v2_compose(policy: Policy) -> v2.Compose:
    """uint8 (C, H, W) tensor in, normalized float32 out; each call draws new parameters.

    Mirrors the steps' `reference_random()` one for one, so the two per-sample pipelines do the
    same work (bilinear rotation, one ColorJitter per photometric op)."""
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


def mnist_loader(policy: Policy, n: int, *, batch_size: int, num_workers: int, seed: int = 0,
                 drop_last: bool = False) -> DataLoader:
    """A class-balanced n-image subset of torchvision MNIST's train split with
    `policy.reference_train()` per image, shuffled.

    Workers persist across epochs: their start-up is paid in the warm-up, as a long training run
    pays it once."""
    root = resolve_data_root(None)
    dataset = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=policy.reference_train())
    if n < len(dataset):
        dataset = Subset(dataset, balanced_indices(dataset.targets, n, len(dataset.classes)).tolist())
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=drop_last,
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed),
    )


def notebook_epoch(run: Run, loader: DataLoader) -> dict:
    """One pass over `loader` with `run`'s model, optimizer and step, the notebook's way."""
    run.model.train()
    loss_sum, correct, n = 0.0, 0, 0
    for images, labels in loader:
        x = images.to(run.device).contiguous(memory_format=run.memory_format)
        y = labels.to(run.device)
        loss, logits = train_step(run, x, y)
        # the notebook's running sums: two host syncs per step
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"train_loss": loss_sum / n, "train_acc": correct / n}


def bare_epoch(run: Run, x: torch.Tensor, y: torch.Tensor, *, steps: int) -> dict:
    """`steps` train steps on one batch already on the device: the ceiling any data path can reach."""
    run.model.train()
    loss_sum = torch.zeros((), device=x.device)
    for _ in range(steps):
        loss, _ = train_step(run, x, y)
        loss_sum += loss.float()
    return {"train_loss": loss_sum.item() / steps}  # one sync per epoch, as train_one_epoch
