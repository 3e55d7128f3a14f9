"""Datasets as uint8 tensors (N, C, H, W) held once on the training device.

torchvision.datasets reads (and, when the network is there, downloads) the files; the
images are converted once, never per sample, so a training batch is an index gather.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ablations.config import DATASETS
from ablations.errors import UserError, unknown_name

DATA_ROOT_ENV = "ABLATIONS_DATA_ROOT"
DEFAULT_DATA_ROOT = "./data"
# Subsets use their own fixed seed, not the run's: every run of a grid sees the same images,
# so differences between cells are paired on data and only training randomness varies.
SUBSET_SEED = 0
# The validation split has a seed of its own, so it is the same images whatever the subsets.
VALIDATION_SEED = 1
# Default validation size: a tenth of the train split, at most the classic MNIST 5,000.
VALIDATION_SHARE, VALIDATION_MAX = 0.1, 5000

_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}
# The MNIST-family files (torchvision's raw/ layout) and the dimensions each holds.
IDX_FILES = {"images": ("images-idx3-ubyte", 3), "labels": ("labels-idx1-ubyte", 1)}
IDX_UBYTE = 0x08  # the idx type code of unsigned bytes, the only type these files use


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


def resolve_data_root(data_root: str | None) -> Path:
    """--data-root, else $ABLATIONS_DATA_ROOT, else ./data."""
    return Path(data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser()


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    device: torch.device | str = "cpu",
) -> TensorDataset:
    """The named dataset with a validation split held out of its train split, then the subsets."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    if name == "synthetic":
        full = synthetic_dataset()
    else:
        root = resolve_data_root(data_root)
        train_x, train_y = _read_torchvision(name, root, train=True)
        test_x, test_y = _read_torchvision(name, root, train=False)
        full = TensorDataset(name, train_x, train_y, test_x, test_y, int(train_y.max()) + 1)
    full = hold_out_validation(full, val_subset)
    full = _subset(full, train_subset, test_subset)
    return full.to(device)


def _read_torchvision(name: str, root: Path, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as uint8 (N, C, H, W) + int64 labels; downloads only if the files are missing."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASSES[name])
    if name != "cifar10":
        check_idx_files(root / cls.__name__ / "raw", train=train)
    try:
        ds = cls(root=str(root), train=train, download=False)
    except RuntimeError as err:
        if "not found" not in str(err):  # the files are there but do not read back
            raise damaged(root / cls.__name__, err) from None
        ds = _download(cls, name, root, train=train)
    except Exception as err:  # a truncated pickle or array: torchvision's own asserts and errors
        raise damaged(root / cls.__name__, err) from None
    images = torch.as_tensor(ds.data)
    # MNIST-style data is (N, H, W), one channel; CIFAR stores (N, H, W, C) as numpy
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return images.contiguous(), labels


def _download(cls, name: str, root: Path, *, train: bool):
    """Download into root/<Class>/; a failed download leaves the data root as it found it."""
    refuse_dataset_folder_as_root(root, cls.__name__)
    folder = root / cls.__name__
    before = _tree(folder)
    created = _first_missing(folder)
    try:
        return cls(root=str(root), train=train, download=True)
    except Exception as err:  # no network, a proxy, a mirror down: all mean the same to the user
        _undo_download(folder, before, created)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{name} not found under {folder.resolve()} and the download failed ({reason}); "
            f"put the torchvision files there, or point --data-root or ${DATA_ROOT_ENV} at a folder that has them"
        ) from None


def refuse_dataset_folder_as_root(root: Path, folder_name: str) -> None:
    """A data root one level too deep (.../MNIST or .../MNIST/raw) would get a second MNIST/raw
    inside the user's own folder and a download beside their files: stop and say where to point."""
    if root.name in (folder_name, "raw") or (root / "raw").is_dir():
        holder = root.parent.parent if root.name == "raw" else root.parent
        raise UserError(
            f"data root {root} looks like a dataset folder itself (it has no {folder_name}/ inside); "
            f"point --data-root or ${DATA_ROOT_ENV} at the folder that holds {folder_name}/, e.g. {holder}"
        )


def _tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.is_dir() else set()


def _first_missing(path: Path) -> Path | None:
    """The highest folder of `path` (itself included) that does not exist yet: a download creates it."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _undo_download(folder: Path, before: set[Path], created: Path | None) -> None:
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for path in sorted(_tree(folder) - before, key=lambda p: len(p.parts), reverse=True):  # deepest first
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def check_idx_files(raw: Path, *, train: bool) -> None:
    """Check the idx headers and sizes of one split's MNIST-style files (absent files are the
    download's business). torchvision would fail on a damaged one with a bare assertion, or not at all."""
    prefix = "train" if train else "t10k"
    counts = {}
    for kind, (suffix, ndim) in IDX_FILES.items():
        path = raw / f"{prefix}-{suffix}"
        if path.is_file():
            counts[kind] = _idx_count(path, ndim)
    if len(counts) == 2 and counts["images"] != counts["labels"]:
        raise damaged(raw / f"{prefix}-{IDX_FILES['labels'][0]}",
                      f"{counts['labels']:,} labels for {counts['images']:,} images")


def _idx_count(path: Path, ndim: int) -> int:
    """The item count of an idx file whose header (zero, zero, type, ndim, then big-endian uint32 sizes)
    and length agree with the dimensions it should hold."""
    header_size = 4 * (ndim + 1)
    with open(path, "rb") as handle:
        header = handle.read(header_size)
    if len(header) < header_size or header[:2] != b"\0\0" or header[2] != IDX_UBYTE or header[3] != ndim:
        raise damaged(path, f"not an idx file of {ndim}-d unsigned bytes")
    sizes = [int.from_bytes(header[4 * (i + 1): 4 * (i + 2)], "big") for i in range(ndim)]
    expected = header_size + math.prod(sizes)
    actual = path.stat().st_size
    if actual != expected:
        raise damaged(path, f"{actual:,} bytes where its header promises {expected:,}")
    return sizes[0]


def damaged(path: Path, why: object) -> UserError:
    reason = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
    return UserError(f"{path} is damaged ({reason}); delete it to download it again, or restore it from a copy")


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
    val = balanced_indices(ds.train_labels, n, ds.num_classes, seed=VALIDATION_SEED)
    keep = torch.ones(total, dtype=torch.bool)
    keep[val] = False
    return dataclasses.replace(
        ds, train_images=ds.train_images[keep], train_labels=ds.train_labels[keep],
        val_images=ds.train_images[val], val_labels=ds.train_labels[val],
    )


def _subset(ds: TensorDataset, train_n: int | None, test_n: int | None) -> TensorDataset:
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
            idx = balanced_indices(labels, n, ds.num_classes)
            images, labels = images[idx], labels[idx]
        splits[split] = (images, labels)
    return dataclasses.replace(ds, train_images=splits["train"][0], train_labels=splits["train"][1],
                               test_images=splits["test"][0], test_labels=splits["test"][1])
