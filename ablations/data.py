"""Datasets as uint8 tensors (N, C, H, W) held once on the training device.

torchvision.datasets reads (and, when the network is there, downloads) the files; the
images are converted once, never per sample, so a training batch is an index gather.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ablations.config import check_dataset
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
    check_dataset(name)
    if name == "synthetic":
        full = synthetic_dataset()
    elif name.startswith("imagefolder:"):
        from ablations.image_folder import read_image_folder

        (train_x, train_y), (test_x, test_y), classes = read_image_folder(name.partition(":")[2])
        full = TensorDataset(name, train_x, train_y, test_x, test_y, len(classes))
    else:
        root = resolve_data_root(data_root)
        train_x, train_y = _read_torchvision(name, root, train=True)
        test_x, test_y = _read_torchvision(name, root, train=False)
        (train_y, test_y), num_classes = _dense_labels(train_y, test_y)
        full = TensorDataset(name, train_x, train_y, test_x, test_y, num_classes)
    full = hold_out_validation(full, val_subset)
    full = _subset(full, train_subset, test_subset)
    return full.to(device)


def _read_torchvision(name: str, root: Path, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as uint8 (N, C, H, W) + int64 labels; downloads only if the files are missing."""
    cls, options = torchvision_class(name)
    folder = dataset_folder(cls, root)
    prefix = _idx_prefix(cls, options, train=train)
    if prefix is not None:
        check_idx_files(folder / "raw", prefix)
    try:
        ds = cls(root=str(root), train=train, download=False, **options)
    except (RuntimeError, FileNotFoundError) as err:
        if not isinstance(err, FileNotFoundError) and "not found" not in str(err):  # there but unreadable
            raise damaged(folder, err) from None
        ds = _download(name, cls, options, root, train=train)
    except Exception as err:  # a truncated pickle or array: torchvision's own asserts and errors
        raise damaged(folder, err) from None
    return _as_tensors(cls, ds)


def _as_tensors(cls: type, ds) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(np.asarray(ds.data))
    if images.dtype != torch.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise UserError(f"torchvision dataset {cls.__name__} holds {tuple(images.shape)} {images.dtype} images, "
                        "not uint8 (N, H, W) or (N, H, W, 3); it is not supported")
    # MNIST-style data is (N, H, W), one channel; CIFAR stores (N, H, W, C) as numpy
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    if labels.ndim == 2:  # QMNIST keeps extra columns per image; the first is the class, as its compat mode gives
        labels = labels[:, 0]
    return images.contiguous(), labels


def _dense_labels(train_y: torch.Tensor, test_y: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """Label ids 0..k-1 for the k classes present: EMNIST letters numbers its 26 classes from 1, and
    an id without images would leave the class-balanced splits a class they cannot fill."""
    present, dense = torch.unique(torch.cat([train_y, test_y]), return_inverse=True)
    if len(present) == int(present.max()) + 1:
        return (train_y, test_y), len(present)
    return (dense[: len(train_y)], dense[len(train_y):]), len(present)


def torchvision_class(name: str) -> tuple[type, dict]:
    """The torchvision.datasets class a dataset name reads with, and the options it needs
    ("mnist", "torchvision:KMNIST", "torchvision:EMNIST-letters" -> EMNIST with split="letters")."""
    import torchvision.datasets as tvd

    class_name = _TORCHVISION_CLASSES.get(name) or name.partition(":")[2].strip()
    options = {}
    if class_name.startswith("EMNIST"):
        split = class_name.partition("-")[2]
        if split not in tvd.EMNIST.splits:
            raise UserError(f"dataset {name!r}: EMNIST needs one of its splits, torchvision:EMNIST-SPLIT with SPLIT "
                            f"one of: {', '.join(tvd.EMNIST.splits)}")
        return tvd.EMNIST, {"split": split}
    cls = getattr(tvd, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tvd.VisionDataset)):
        raise unknown_name("torchvision dataset", class_name, supported_torchvision_classes())
    if not _supported(cls):
        raise UserError(f"torchvision dataset {class_name} is not supported: only classifications held in memory and "
                        f"called as (root, train=..., download=...) are: {', '.join(supported_torchvision_classes())}")
    return cls, options


def supported_torchvision_classes() -> list[str]:
    import torchvision.datasets as tvd

    names = [n for n in tvd.__all__ if isinstance(getattr(tvd, n), type) and issubclass(getattr(tvd, n), tvd.VisionDataset)]
    return sorted("EMNIST-SPLIT" if n == "EMNIST" else n for n in names if n == "EMNIST" or _supported(getattr(tvd, n)))


def _supported(cls: type) -> bool:
    """A class of the families that hold a whole split as `data` and `targets` arrays (the signature
    alone would let in detection sets such as Kitti), called as (root, train=..., download=...)."""
    import torchvision.datasets as tvd

    return issubclass(cls, (tvd.MNIST, tvd.CIFAR10, tvd.USPS)) and _takes_train_and_download(cls)


def _takes_train_and_download(cls: type) -> bool:
    """Whether cls(root, train=..., download=...) is all it needs: its own __init__'s required
    arguments are root alone, and train and download are taken by it or by the parents its
    **kwargs go to (KMNIST passes everything on to MNIST)."""
    taken, required, own = set(), set(), True
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]  # self
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        taken |= {p.name for p in named}
        if own:
            required = {p.name for p in named if p.default is p.empty} - {"root"}
            own = False
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return {"train", "download"} <= taken and not required


def dataset_folder(cls: type, root: Path) -> Path:
    """Where torchvision keeps a class's files under the data root: root/<Class>/ (raw/ inside for
    the MNIST family), or the folder the class names itself (CIFAR10: cifar-10-batches-py)."""
    return root / getattr(cls, "base_folder", cls.__name__)


def _idx_prefix(cls: type, options: dict, *, train: bool) -> str | None:
    """The file-name prefix of a split's idx files, for the classes that read MNIST's format; None
    for the others, whose own checks apply (QMNIST's labels are another idx type)."""
    import torchvision.datasets as tvd

    if getattr(cls, "_load_data", None) is tvd.MNIST._load_data:  # MNIST, FashionMNIST, KMNIST
        return "train" if train else "t10k"
    if issubclass(cls, tvd.EMNIST):
        return f"emnist-{options['split']}-{'train' if train else 'test'}"
    return None


def _download(name: str, cls: type, options: dict, root: Path, *, train: bool):
    """Download into the class's folder; a failed download leaves the data root as it found it."""
    folder = dataset_folder(cls, root)
    refuse_dataset_folder_as_root(root, folder.name)
    before = _tree(folder)
    created = _first_missing(folder)
    try:
        return cls(root=str(root), train=train, download=True, **options)
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


def check_idx_files(raw: Path, prefix: str) -> None:
    """Check the idx headers and sizes of one split's MNIST-style files (absent files are the
    download's business). torchvision would fail on a damaged one with a bare assertion, or not at all."""
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
