"""Datasets by source: torchvision:<Class> on files written here in torchvision's own format, and
imagefolder:PATH on real image files written with PIL, read through the real loading code and CLIs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ablations.config import TrainConfig
from ablations.data.dataset import load_dataset
from ablations.data.image_folder import TEST_SHARE
from ablations.errors import UserError
from ablations.store.sqlite import store_path

REPO = Path(__file__).resolve().parents[1]
# Send any download attempt to a closed port on this machine: "no network", on every machine.
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
CLASSES = ("cat", "dog", "eel")  # sorted: label ids 0, 1, 2


def python_m(module: str, *args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **NO_NETWORK, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ---- an image folder, written with PIL ---------------------------------------------------------
def pixel_value(label: int, index: int) -> int:
    """Each image is one flat grey, unique per (class, index): a pixel says which file it came from."""
    return 10 + 60 * label + index


def write_class_folders(folder: Path, per_class: int, *, size: int = 16) -> None:
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (size, size), pixel_value(label, i)).save(folder / name / f"{i:03d}.png")


def learnable_folder(folder: Path, per_class: int) -> None:
    """Classes a ResNet separates in one epoch: three brightness levels under noise."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((16, 16), 40 + 80 * label) + rng.integers(0, 40, (16, 16))
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{i}.png")


def flat_values(images: torch.Tensor) -> list[int]:
    assert bool((images == images[:, :, :1, :1]).all())  # every image is still one flat grey
    return images[:, 0, 0, 0].tolist()


def test_train_and_test_folders_read_back_exactly_with_sorted_class_ids(tmp_path):
    write_class_folders(tmp_path / "train", 12)
    write_class_folders(tmp_path / "test", 4)
    ds = load_dataset(f"imagefolder:{tmp_path}", val_subset=3)
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (33, 1, 16, 16)
    assert ds.val_images.shape == (3, 1, 16, 16) and ds.test_images.shape == (12, 1, 16, 16)
    assert ds.num_classes == 3 and torch.bincount(ds.test_labels).tolist() == [4, 4, 4]
    for images, labels in (ds.split("train"), ds.split("val"), ds.split("test")):
        assert [(v - 10) // 60 for v in flat_values(images)] == labels.tolist()  # each image under its class's id
    train_and_val = sorted(flat_values(ds.train_images) + flat_values(ds.val_images))
    assert train_and_val == sorted(pixel_value(c, i) for c in range(3) for i in range(12))


def test_one_folder_is_split_class_balanced_the_same_every_time(tmp_path):
    write_class_folders(tmp_path, 12)
    a = load_dataset(f"imagefolder:{tmp_path}", val_subset=3)
    b = load_dataset(f"imagefolder:{tmp_path}", val_subset=3)
    test_per_class = round(TEST_SHARE * 12)  # 2 of 12
    assert torch.bincount(a.test_labels).tolist() == [test_per_class] * 3
    assert len(a.train_labels) + len(a.val_labels) == 3 * (12 - test_per_class)
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.train_images, b.train_images)
    held = set(flat_values(a.test_images))
    assert held.isdisjoint(flat_values(a.train_images) + flat_values(a.val_images))
    # the split draws within each class: a class's test files are not the same ranks in every class
    ranks = [{(v - 10) % 60 for v, c in zip(flat_values(a.test_images), a.test_labels, strict=True) if c == k} for k in range(3)]
    assert len({frozenset(r) for r in ranks}) > 1


def test_sizes_and_colours_meet_in_the_most_common_square_and_rgb(tmp_path):
    write_class_folders(tmp_path, 3)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "cat" / "red.png")
    # a wide image: its centred square (the grey middle) is kept and resized to 16 px
    wide = Image.new("L", (64, 32), 0)
    wide.paste(90, (8, 0, 56, 32))  # black only at the far edges: squashed instead of cropped, they would show
    wide.save(tmp_path / "dog" / "wide.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", val_subset=3)
    images = torch.cat([ds.train_images, ds.val_images, ds.test_images])
    assert images.shape == (3 * 3 + 2, 3, 16, 16)
    red = images[(images[:, 0] == 200).all(dim=(1, 2))]
    assert red.shape[0] == 1 and red[0, 1:].eq(0).all()
    greys = images[(images[:, 0] == images[:, 1]).all(dim=(1, 2))]
    assert len(greys) == 10 and greys.eq(greys[:, :1]).all()  # grey images copied into three equal channels
    assert (images == 90).all(dim=(1, 2, 3)).sum() == 1  # the wide one: its middle square, every pixel 90


def test_junk_files_are_ignored_and_a_non_image_is_named(tmp_path):
    write_class_folders(tmp_path, 3)
    (tmp_path / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / "cat" / "Thumbs.db").write_bytes(b"\0\1junk")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "README.txt").write_text("files beside the class folders belong to no class")
    assert load_dataset(f"imagefolder:{tmp_path}", val_subset=3).num_classes == 3
    notes = tmp_path / "dog" / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(UserError, match=rf"^{notes} is not a readable image \(cannot identify image file"):
        load_dataset(f"imagefolder:{tmp_path}", val_subset=3)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "{p}/nothing does not exist; imagefolder:PATH needs a folder of class subfolders"),
        (lambda p: (p / "nothing").mkdir(), "{p}/nothing has no class subfolders; put each class's images"),
        (lambda p: (write_class_folders(p / "nothing" / "train", 3), (p / "nothing" / "test" / "cat").mkdir(parents=True)),
         "class folder {p}/nothing/test/cat has no images; add some or remove the folder"),
        (lambda p: (write_class_folders(p / "nothing" / "train", 3), write_class_folders(p / "nothing" / "test", 3),
                    (p / "nothing" / "test" / "fox").mkdir(), Image.new("L", (16, 16)).save(p / "nothing/test/fox/a.png")),
         "{p}/nothing/train and {p}/nothing/test have different classes (only in test: fox)"),
        (lambda p: write_class_folders(p / "nothing" / "train", 3), "{p}/nothing has train/ but no test/"),
        (lambda p: ((p / "nothing" / "cat").mkdir(parents=True), Image.new("L", (16, 16)).save(p / "nothing/cat/a.png")),
         "class folder {p}/nothing/cat has 1 image; splitting it into train and test needs at least 2 per class"),
    ],
    ids=["missing", "no classes", "empty test class", "different classes", "train without test", "one image"],
)
def test_a_bad_folder_is_one_error_naming_it(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(UserError) as err:
        load_dataset(f"imagefolder:{tmp_path / 'nothing'}")
    assert str(err.value).startswith(message.format(p=tmp_path)), str(err.value)


def test_an_image_folder_trains_end_to_end_from_the_cli(tmp_path):
    learnable_folder(tmp_path / "pets", 60)
    proc = python_m("ablations.train", "--dataset", "imagefolder:pets", "--epochs", "1", "--batch-size", "8",
                    "--device", "cpu", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs_run"] == 1
    assert summary["config"]["dataset"] == f"imagefolder:{tmp_path / 'pets'}"  # stored absolute
    assert summary["final_test_acc"] > 0.6  # chance is 1/3


def test_a_bad_image_or_class_exits_2_with_one_line_naming_it(tmp_path):
    write_class_folders(tmp_path, 4)
    broken = tmp_path / "eel" / "001.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)).save(broken)
    broken.write_bytes(broken.read_bytes()[:170])  # a PNG cut in half: its header reads, its pixels do not
    line = one_error_line(python_m("ablations.train", "--dataset", f"imagefolder:{tmp_path}", "--epochs", "1"))
    assert line.startswith(f"error: {broken} is not a readable image (")
    broken.unlink()
    for image in (tmp_path / "dog").iterdir():
        image.unlink()
    line = one_error_line(python_m("ablations.train", "--dataset", f"imagefolder:{tmp_path}", "--epochs", "1"))
    assert line == f"error: class folder {tmp_path / 'dog'} has no images; add some or remove the folder"


def test_a_bad_folder_in_a_grid_exits_2_before_the_store_is_written(tmp_path):
    results = tmp_path / "results"
    line = one_error_line(python_m("ablations.run_grid", "--grid", "smoke", "--results", str(results),
                                   "--set", f"dataset=imagefolder:{tmp_path / 'missing'}"))
    assert line.startswith(f"error: {tmp_path / 'missing'} does not exist")
    assert not store_path(results).exists()


def test_an_image_folder_is_named_by_its_absolute_path_in_the_run_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    typed = TrainConfig(dataset="imagefolder:pets/")
    assert typed.dataset == f"imagefolder:{tmp_path / 'pets'}"
    assert typed.run_id == TrainConfig(dataset=f"imagefolder:{tmp_path}/pets").run_id
    monkeypatch.chdir(tmp_path.parent)  # the same words from elsewhere are another folder, another run
    assert TrainConfig(dataset="imagefolder:pets").run_id != typed.run_id
    assert TrainConfig(dataset="imagefolder:pets", data_root="/elsewhere").run_id != typed.run_id
    assert TrainConfig.from_mapping(typed.to_dict()) == typed  # the store reads its configs back unchanged


@pytest.mark.parametrize(
    "name,message",
    [
        ("imagefolder:", "dataset 'imagefolder:' names no path; write imagefolder:PATH"),
        ("torchvision: ", "dataset 'torchvision: ' names no class; write torchvision:CLASS"),
        ("hub:cats", "unknown dataset 'hub:cats'; choose one of: cifar10, fashion_mnist, imagefolder:PATH, mnist, "
                     "synthetic, torchvision:CLASS"),
    ],
)
def test_dataset_names_are_checked_without_touching_the_disk(name, message):
    with pytest.raises(UserError) as err:
        TrainConfig(dataset=name)
    assert str(err.value).startswith(message)


# ---- torchvision classes, on files in their own format ---------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes: zero, zero, type 0x08, the dimension count, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_format(raw: Path, prefixes: tuple[str, str], labels: dict[str, np.ndarray]) -> None:
    """Images whose every pixel is their index in the split (mod 256), so the order reads back exactly."""
    raw.mkdir(parents=True)
    for split, prefix in zip(("train", "test"), prefixes, strict=True):
        n = len(labels[split])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.broadcast_to((np.arange(n) % 256)[:, None, None], (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[split])


def test_kmnist_in_its_own_format_reads_back_without_a_download(tmp_path, monkeypatch):
    for key, value in NO_NETWORK.items():
        monkeypatch.setenv(key, value)
    labels = {"train": np.arange(300) % 10, "test": np.arange(100) % 10}
    write_mnist_format(tmp_path / "KMNIST" / "raw", ("train", "t10k"), labels)
    ds = load_dataset("torchvision:KMNIST", data_root=str(tmp_path), val_subset=30)
    assert ds.train_images.shape == (270, 1, 28, 28) and ds.test_images.shape == (100, 1, 28, 28)
    assert ds.num_classes == 10 and ds.test_labels.tolist() == labels["test"].tolist()
    assert ds.test_images[:, 0, 5, 5].tolist() == list(range(100))
    assert sorted(ds.train_images[:, 0, 0, 0].tolist() + ds.val_images[:, 0, 0, 0].tolist()) == sorted([*range(256), *range(44)])


def test_a_damaged_kmnist_file_is_named_by_the_same_checks_as_mnist(tmp_path):
    labels = {"train": np.arange(300) % 10, "test": np.arange(100) % 10}
    write_mnist_format(tmp_path / "KMNIST" / "raw", ("train", "t10k"), labels)
    images = tmp_path / "KMNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-28])
    with pytest.raises(UserError) as err:
        load_dataset("torchvision:KMNIST", data_root=str(tmp_path))
    assert str(err.value) == (f"{images} is damaged (78,388 bytes where its header promises 78,416); "
                              "delete it to download it again, or restore it from a copy")


def test_emnist_letters_by_split_with_its_classes_numbered_from_zero(tmp_path):
    labels = {"train": np.arange(1, 261) % 26 + 1, "test": np.arange(52) % 26 + 1}  # EMNIST letters: 1..26
    write_mnist_format(tmp_path / "EMNIST" / "raw", ("emnist-letters-train", "emnist-letters-test"), labels)
    ds = load_dataset("torchvision:EMNIST-letters", data_root=str(tmp_path))
    assert ds.num_classes == 26 and ds.test_labels.tolist() == (labels["test"] - 1).tolist()


def test_a_missing_torchvision_dataset_offline_names_the_folder_and_the_flag(tmp_path, monkeypatch):
    for key, value in NO_NETWORK.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError) as err:
        load_dataset("torchvision:KMNIST", data_root=str(tmp_path))
    assert str(err.value).startswith(f"torchvision:KMNIST not found under {tmp_path / 'KMNIST'} and the download failed")
    assert "--data-root" in str(err.value) and "$ABLATIONS_DATA_ROOT" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # the failed download left nothing behind


@pytest.mark.parametrize(
    "name,message",
    [
        ("torchvision:Kmnist", "error: unknown torchvision dataset 'Kmnist'; choose one of: CIFAR10, CIFAR100, "
                               "EMNIST-SPLIT, FashionMNIST, KMNIST, MNIST, QMNIST"),
        ("torchvision:ImageNet", "error: torchvision dataset ImageNet is not supported: only classifications held "
                                 "in memory and called as (root, train=..., download=...) are: CIFAR10,"),
        ("torchvision:VOCDetection", "error: torchvision dataset VOCDetection is not supported"),
        ("torchvision:EMNIST", "error: dataset 'torchvision:EMNIST': EMNIST needs one of its splits, "
                               "torchvision:EMNIST-SPLIT with SPLIT one of: byclass, bymerge, balanced, letters,"),
    ],
)
def test_an_unusable_torchvision_class_is_one_line_that_says_what_is_usable(tmp_path, name, message):
    with pytest.raises(UserError) as err:
        load_dataset(name, data_root=str(tmp_path))
    assert f"error: {err.value}".startswith(message)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, nothing created


def test_an_unknown_or_unsupported_torchvision_class_exits_2_from_the_cli(tmp_path):
    for name, words in (("torchvision:Kmnist", "unknown torchvision dataset 'Kmnist'; choose one of: CIFAR10,"),
                        ("torchvision:ImageNet", "torchvision dataset ImageNet is not supported")):
        proc = python_m("ablations.train", "--dataset", name, "--data-root", str(tmp_path), "--epochs", "1")
        assert one_error_line(proc).startswith(f"error: {words}")
