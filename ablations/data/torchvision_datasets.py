"""torchvision.datasets classes as uint8 tensors: `mnist`, `fashion_mnist`, `cifar10` and
`--dataset torchvision:<Class>` for any class that holds a classification split in memory and is
called as (root, train=..., download=...): KMNIST, QMNIST, CIFAR100, ... and EMNIST by split
(torchvision:EMNIST-letters). The files sit in torchvision's own layout under the data root
(root/KMNIST/raw/...). What is there is checked before torchvision reads it (its own failures are
bare assertions, or none); what is missing is downloaded, and a failed download is undone.
"""

from __future__ import annotations

import inspect
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from ablations.data.root import DATA_ROOT_ENV
from ablations.errors import UserError, unknown_name

_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}
# The MNIST-family files (torchvision's raw/ layout) and the dimensions each holds.
IDX_FILES = {"images": ("images-idx3-ubyte", 3), "labels": ("labels-idx1-ubyte", 1)}
IDX_UBYTE = 0x08  # the idx type code of unsigned bytes, the only type these files use

Split = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W) images, int64 labels


def read_torchvision(name: str, root: Path) -> tuple[Split, Split, int]:
    """(train, test, class count) of a dataset read with torchvision under the data root."""
    train_x, train_y = _read_torchvision(name, root, train=True)
    test_x, test_y = _read_torchvision(name, root, train=False)
    (train_y, test_y), num_classes = _dense_labels(train_y, test_y)
    return (train_x, train_y), (test_x, test_y), num_classes


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
    return cls, {}


def supported_torchvision_classes() -> list[str]:
    import torchvision.datasets as tvd

    names = [n for n in tvd.__all__ if isinstance(getattr(tvd, n), type) and issubclass(getattr(tvd, n), tvd.VisionDataset)]
    return sorted("EMNIST-SPLIT" if n == "EMNIST" else n for n in names if n == "EMNIST" or _supported(getattr(tvd, n)))


def _supported(cls: type) -> bool:
    """A class of the families that hold a whole split as `data` and `targets` arrays in a folder of
    their own (the signature alone would let in detection sets such as Kitti; USPS leaves its files
    loose in the data root), called as (root, train=..., download=...)."""
    import torchvision.datasets as tvd

    return issubclass(cls, (tvd.MNIST, tvd.CIFAR10)) and _takes_train_and_download(cls)


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
        reason = download_reason(err)
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


def download_reason(err: BaseException) -> str:
    """Why a download failed, on one line. torchvision's own message opens with a line that ends in a
    colon ("Error downloading train-images-idx3-ubyte.gz:") and gives each mirror's error below it;
    the first of those is the reason a user needs ("<urlopen error [Errno -3] Temporary failure ...>")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    details = [line for line in lines[1:] if not line.startswith("Tried ")]
    head = lines[0].rstrip(":") if lines else type(err).__name__
    cause = err.__cause__ or err.__context__
    detail = details[0] if details else (str(cause).strip() if cause is not None and str(cause).strip() else "")
    return f"{head}: {detail}" if detail else head
