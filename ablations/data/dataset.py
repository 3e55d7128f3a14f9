"""Datasets as uint8 tensors (N, C, H, W) held once on the training device.

The images are read and converted once, never per sample, so a training batch is an index
gather: torchvision.datasets classes by name (ablations.data.torchvision_datasets, which downloads
what is missing when the network is there), a folder of class subfolders (ablations.data.image_folder),
or the synthetic set made here. Validation and subsets are drawn the same way for all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ablations.config import check_dataset
from ablations.data.image_folder import read_image_folder
from ablations.data.root import resolve_data_root
from ablations.data.torchvision_datasets import read_torchvision
from ablations.errors import UserError

# Subsets use their own fixed seed, not the run's: every run of a grid sees the same images,
# so differences between cells are paired on data and only training randomness varies.
SUBSET_SEED = 0
# The validation split has a seed of its own, so it is the same images whatever the subsets.
VALIDATION_SEED = 1
# Default validation size: a tenth of the train split, at most the classic MNIST 5,000.
VALIDATION_SHARE, VALIDATION_MAX = 0.1, 5000


@dataclass(frozen=True)
class TensorDataset:
    """Train, validation (held out of the train split) and test images; selection uses validation."""

    name: str
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def native_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def to(self, device: torch.device | str) -> TensorDataset:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return TensorDataset(
            self.name, move(self.train_images), move(self.train_labels), move(self.test_images),
            move(self.test_labels), self.num_classes, move(self.val_images), move(self.val_labels),
        )

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of 'train', 'val' or 'test'."""
        images, labels = getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")
        if images is None:
            raise ValueError(f"{self.name} has no {name} split")
        return images, labels


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int | None = None,
    device: torch.device | str = "cpu",
) -> TensorDataset:
    """The named dataset with a validation split held out of its train split, then the subsets.
    `subset_seed` draws the train subset (None: the fixed SUBSET_SEED); the test subset is always fixed."""
    check_dataset(name)
    if name == "synthetic":
        full = synthetic_dataset()
    elif name.startswith("imagefolder:"):
        (train_x, train_y), (test_x, test_y), classes = read_image_folder(name.partition(":")[2])
        full = TensorDataset(name, train_x, train_y, test_x, test_y, len(classes))
    else:
        (train_x, train_y), (test_x, test_y), num_classes = read_torchvision(name, resolve_data_root(data_root))
        full = TensorDataset(name, train_x, train_y, test_x, test_y, num_classes)
    full = hold_out_validation(full, val_subset)
    full = _subset(full, train_subset, test_subset, SUBSET_SEED if subset_seed is None else subset_seed)
    return full.to(device)


def synthetic_dataset(
    *, num_train: int = 1024, num_test: int = 512, size: int = 28, num_classes: int = 10, seed: int = 1234
) -> TensorDataset:
    """Small and learnable: each class is a fixed smooth random pattern, samples add noise and
    a brightness change. A ResNet separates the classes in seconds; chance is 1/num_classes."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 1, 7, 7, generator=g)
    prototypes = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        gain = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
        noise = 0.25 * torch.randn(n, 1, size, size, generator=g)
        pixels = (prototypes[labels] * gain + noise).clamp(0, 1)
        return (pixels * 255).round().to(torch.uint8), labels

    train_x, train_y = draw(num_train)
    test_x, test_y = draw(num_test)
    return TensorDataset("synthetic", train_x, train_y, test_x, test_y, num_classes)


def balanced_indices(labels: torch.Tensor, n: int, num_classes: int, *, seed: int = SUBSET_SEED) -> torch.Tensor:
    """n indices with classes as equal as possible (the first n % k classes get one more)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    shuffled = labels[order]
    picks = []
    for c in range(num_classes):
        quota = n // num_classes + (1 if c < n % num_classes else 0)
        of_class = order[shuffled == c]
        if len(of_class) < quota:
            raise UserError(f"class {c} has only {len(of_class)} images; a balanced subset of {n} needs {quota}")
        picks.append(of_class[:quota])
    chosen = torch.cat(picks)
    return chosen[torch.randperm(len(chosen), generator=g)]


def hold_out_validation(ds: TensorDataset, n: int | None) -> TensorDataset:
    """Move a class-balanced validation split out of the training images (same images every run)."""
    total = len(ds.train_labels)
    n = n if n is not None else min(VALIDATION_MAX, max(ds.num_classes, round(VALIDATION_SHARE * total)))
    if n >= total:
        raise UserError(f"val-subset {n} leaves no training images (the {ds.name} train split has {total}); "
                        f"use fewer than {total}")
    smallest = int(torch.bincount(ds.train_labels, minlength=ds.num_classes).min())
    if -(-n // ds.num_classes) >= smallest:  # balanced: every class gives n / k, and keeps some to train on
        raise UserError(f"a class-balanced validation split of {n} images takes {-(-n // ds.num_classes)} of every "
                        f"class, and the smallest class of {ds.name} has {smallest} training images; "
                        f"set --val-subset to at most {(smallest - 1) * ds.num_classes}")
    val = balanced_indices(ds.train_labels, n, ds.num_classes, seed=VALIDATION_SEED)
    keep = torch.ones(total, dtype=torch.bool)
    keep[val] = False
    return dataclasses.replace(
        ds, train_images=ds.train_images[keep], train_labels=ds.train_labels[keep],
        val_images=ds.train_images[val], val_labels=ds.train_labels[val],
    )


def _subset(ds: TensorDataset, train_n: int | None, test_n: int | None, train_seed: int) -> TensorDataset:
    splits = {}
    for split, n in (("train", train_n), ("test", test_n)):
        images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
        if n is not None and n != len(labels):
            if n > len(labels):
                held_out = f" after {len(ds.val_labels)} validation images" if split == "train" else ""
                raise UserError(
                    f"{split}-subset {n} is larger than the {ds.name} {split} split ({len(labels)} images{held_out}); "
                    f"use at most {len(labels)} or leave it unset"
                )
            idx = balanced_indices(labels, n, ds.num_classes, seed=train_seed if split == "train" else SUBSET_SEED)
            images, labels = images[idx], labels[idx]
        splits[split] = (images, labels)
    return dataclasses.replace(ds, train_images=splits["train"][0], train_labels=splits["train"][1],
                               test_images=splits["test"][0], test_labels=splits["test"][1])
