"""A folder of class subfolders (`--dataset imagefolder:PATH`) as uint8 tensors, decoded once.

Layout: PATH/train/<class>/ and PATH/test/<class>/ with the same classes, or PATH/<class>/ alone,
split here: TEST_SHARE of each class's images (rounded, at least one, at least one left to train)
go to test, drawn with a fixed seed from the class's sorted file names, so every run sees the
same split. Class names sorted give the label ids, as in torchvision's ImageFolder.

Every file under a class folder (subfolders included) must be an image PIL reads: an unreadable
one stops the load with its name, nothing is skipped. Only hidden files and folders (.DS_Store,
._* copies, .ipynb_checkpoints) and the Windows thumbnail files Thumbs.db and desktop.ini are
ignored, as are files lying directly in PATH (they belong to no class).

Channels: 1 if every image is grayscale (PIL modes 1, L, LA), else 3: everything becomes RGB.
Size: the model pipeline takes square images of one size (the trainer resizes to --image-size on
the device), so every image becomes a square whose side is the shorter side of the most common
image size; an image of another size or shape is cropped to a centred square and resized
(bilinear). Only headers are read to decide this; each image is then decoded once, into place.
"""

from __future__ import annotations

import os
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ablations.errors import UserError

TEST_SHARE = 0.2  # of each class, for a folder without train/ and test/
SPLIT_SEED = 0  # fixed like the subsets' seed: the split is a property of the folder, not of a run
IGNORED = {"thumbs.db", "desktop.ini"}  # compared lowercased; hidden names are ignored too
GRAYSCALE_MODES = {"1", "L", "LA"}
PROGRESS_FROM = 1000  # images: a progress bar (on a terminal) only for folders worth waiting on

Split = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W) images, int64 labels


def read_image_folder(path: str | Path) -> tuple[Split, Split, list[str]]:
    """(train, test, class names) of an image folder in either layout."""
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UserError(f"{root} {what}; imagefolder:PATH needs a folder of class subfolders "
                        "(or train/ and test/ folders holding them)")
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        missing = test_dir if train_dir.is_dir() else train_dir
        if not missing.is_dir():
            raise UserError(f"{root} has {'train/' if missing is test_dir else 'test/'} but no {missing.name}/; "
                            "give both, or put the class folders directly in it to have it split")
        train_files, test_files = _class_files(train_dir), _class_files(test_dir)
        if set(train_files) != set(test_files):
            raise UserError(f"{train_dir} and {test_dir} have different classes ({_difference(train_files, test_files)}); "
                            "give both the same class folders")
    else:
        train_files, test_files = _split(_class_files(root))
    classes = sorted(train_files)
    decoder = _Decoder([f for files in (train_files, test_files) for c in classes for f in files[c]])
    return decoder.split(train_files, classes), decoder.split(test_files, classes), classes


def _unreadable_folder(err: OSError) -> UserError:
    return UserError(f"cannot read the folder {err.filename} ({err.strerror}); make it readable or move it out")


def _raise_unreadable(err: OSError) -> None:  # os.walk skips what it cannot list unless told otherwise
    raise _unreadable_folder(err)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: its image files, sorted}; a folder without classes or a class without files is an error."""
    try:
        classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not _ignored(e.name))
    except OSError as err:
        raise _unreadable_folder(err) from None
    if not classes:
        raise UserError(f"{folder} has no class subfolders; put each class's images in a folder of its own, "
                        f"e.g. {folder / 'cat'}/")
    found = {}
    for name in classes:
        files = []
        for parent, dirs, names in os.walk(folder / name, onerror=_raise_unreadable):
            dirs[:] = [d for d in dirs if not _ignored(d)]
            files += [Path(parent, n) for n in names if not _ignored(n)]
        if not files:
            raise UserError(f"class folder {folder / name} has no images; add some or remove the folder")
        found[name] = sorted(files)
    return found


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED


def _difference(a: dict, b: dict) -> str:
    parts = [f"only in {side}: {', '.join(sorted(set(mine) - set(other)))}"
             for side, mine, other in (("train", a, b), ("test", b, a)) if set(mine) - set(other)]
    return "; ".join(parts)


def _split(files: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """TEST_SHARE of each class to test; each class draws from its own seeded stream, so adding
    images to one class leaves the others' split as it was."""
    train, test = {}, {}
    for name, paths in files.items():
        if len(paths) < 2:
            raise UserError(f"class folder {paths[0].parent} has 1 image; splitting it into train and test "
                            "needs at least 2 per class")
        n_test = min(max(1, round(TEST_SHARE * len(paths))), len(paths) - 1)
        picked = set(random.Random(f"{SPLIT_SEED}/{name}").sample(range(len(paths)), n_test))
        test[name] = [p for i, p in enumerate(paths) if i in picked]
        train[name] = [p for i, p in enumerate(paths) if i not in picked]
    return train, test


class _Decoder:
    """Reads every header first (size and mode decide the common shape), then decodes on demand."""

    def __init__(self, files: list[Path]) -> None:
        from PIL import Image

        self.sizes, modes = Counter(), set()
        for file in files:
            try:
                with Image.open(file) as image:
                    self.sizes[image.size] += 1
                    modes.add(image.mode)
            except Exception as err:  # not an image, unreadable, a format PIL does not know
                raise _unreadable(file, err) from None
        width, height = self.sizes.most_common(1)[0][0]
        self.side = min(width, height)
        self.mode = "L" if modes <= GRAYSCALE_MODES else "RGB"
        self.total = len(files)

    def split(self, files: dict[str, list[Path]], classes: list[str]) -> Split:
        paths = [p for c in classes for p in files[c]]
        labels = torch.tensor([i for i, c in enumerate(classes) for _ in files[c]], dtype=torch.int64)
        channels = 1 if self.mode == "L" else 3
        images = np.empty((len(paths), self.side, self.side, channels), dtype=np.uint8)
        for i, file in enumerate(self._progress(paths)):
            images[i] = self._decode(file).reshape(self.side, self.side, channels)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels

    def _decode(self, file: Path) -> np.ndarray:
        from PIL import Image, ImageOps

        try:
            with Image.open(file) as image:
                image = image.convert(self.mode)  # decodes: a truncated or corrupt file fails here
        except Exception as err:
            raise _unreadable(file, err) from None
        if image.size != (self.side, self.side):
            image = ImageOps.fit(image, (self.side, self.side), method=Image.Resampling.BILINEAR)
        return np.asarray(image)

    def _progress(self, paths: list[Path]):
        from tqdm import tqdm

        return tqdm(paths, desc="decoding images", unit="img", file=sys.stderr, leave=False,
                    disable=None if self.total >= PROGRESS_FROM else True)  # None: only on a terminal


def _unreadable(file: Path, err: Exception) -> UserError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"{file} is not a readable image ({reason}); replace or remove it "
                     "(every file in a class folder must be an image)")
