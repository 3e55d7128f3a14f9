import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablations.data.dataset import TensorDataset, balanced_indices, hold_out_validation, load_dataset
from ablations.data.root import resolve_data_root
from ablations.errors import UserError

# Send any download attempt to a closed port on this machine: "no network", on every machine.
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def test_mnist_is_uint8_nchw_with_the_real_split_sizes():
    ds = load_dataset("mnist")
    assert ds.train_images.shape == (55_000, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.val_images.shape == (5_000, 1, 28, 28)  # held out of the 60,000 training images
    assert ds.test_images.shape == (10_000, 1, 28, 28)
    assert ds.train_labels.dtype == torch.int64 and ds.num_classes == 10
    assert 30 < ds.train_images.float().mean() < 40  # MNIST's mean pixel is 33.3 / 255


def test_subsets_are_class_balanced_and_seeded():
    a = load_dataset("mnist", train_subset=1000, test_subset=205)
    b = load_dataset("mnist", train_subset=1000, test_subset=205)
    assert torch.equal(a.train_images, b.train_images)
    assert torch.bincount(a.train_labels, minlength=10).tolist() == [100] * 10
    assert sorted(torch.bincount(a.test_labels, minlength=10).tolist()) == [20] * 5 + [21] * 5


def test_a_subset_drawn_per_seed_varies_with_the_seed_and_leaves_validation_and_test_alone():
    from ablations.config import TrainConfig

    def load(seed: int, per_seed: bool = True):
        cfg = TrainConfig(dataset="mnist", train_subset=1000, val_subset=500, test_subset=300, seed=seed,
                          subset_per_seed=per_seed)
        return load_dataset("mnist", train_subset=1000, val_subset=500, test_subset=300,
                            subset_seed=cfg.train_subset_seed)

    fixed, a, a_again, b = load(0, per_seed=False), load(0), load(0), load(1)
    assert torch.equal(a.train_images, a_again.train_images)  # a seed's subset is reproducible
    assert not torch.equal(a.train_images, b.train_images) and not torch.equal(a.train_images, fixed.train_images)
    assert torch.bincount(b.train_labels, minlength=10).tolist() == [100] * 10  # still class-balanced
    for split in ("val", "test"):
        assert all(torch.equal(x.split(split)[0], fixed.split(split)[0]) for x in (a, b))
    val = {bytes(img.numpy()) for img in a.val_images}
    assert not any(bytes(img.numpy()) in val for img in b.train_images)


def test_validation_is_class_balanced_the_same_for_every_subset_and_never_trained_on():
    a = load_dataset("mnist", train_subset=1000, val_subset=500)
    b = load_dataset("mnist", train_subset=3000, val_subset=500)
    assert torch.equal(a.val_images, b.val_images) and torch.bincount(a.val_labels).tolist() == [50] * 10
    val = {bytes(img.numpy()) for img in a.val_images}
    assert not any(bytes(img.numpy()) in val for img in b.train_images)


def test_validation_defaults_to_a_tenth_at_most_5000():
    assert len(load_dataset("synthetic").val_labels) == 102  # a tenth of 1,024
    with pytest.raises(UserError, match="val-subset 1024 leaves no training images"):
        load_dataset("synthetic", val_subset=1024)


def test_balanced_indices_are_distinct():
    labels = torch.arange(1000) % 10
    idx = balanced_indices(labels, 500, 10)
    assert len(set(idx.tolist())) == 500
    assert torch.bincount(labels[idx]).tolist() == [50] * 10


def test_subset_larger_than_the_split_is_an_error():
    with pytest.raises(UserError, match=r"train-subset 70000 is larger than the mnist train split \(55000 images"):
        load_dataset("mnist", train_subset=70_000)


def test_synthetic_is_small_and_deterministic():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert a.train_images.shape == (922, 1, 28, 28) and a.val_images.shape == (102, 1, 28, 28)
    assert a.test_images.shape == (512, 1, 28, 28)
    assert torch.equal(a.train_images, b.train_images)
    both = torch.cat([a.train_labels, a.val_labels])
    assert torch.bincount(both).tolist() == [103] * 4 + [102] * 6  # 1,024 = 10 x 102 + 4


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ABLATIONS_DATA_ROOT", str(tmp_path))
    assert str(resolve_data_root("/given")) == "/given"
    assert resolve_data_root(None) == tmp_path
    monkeypatch.delenv("ABLATIONS_DATA_ROOT")
    assert str(resolve_data_root(None)) == "data"


def test_missing_dataset_without_network_names_the_path_flag_and_variable(monkeypatch, tmp_path):
    for key, value in NO_NETWORK.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError) as err:
        load_dataset("fashion_mnist", data_root=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST") in message
    assert "--data-root" in message and "$ABLATIONS_DATA_ROOT" in message and "download failed" in message
    reason = message.split("download failed (", 1)[1].split(");", 1)[0]
    assert reason.strip() and not reason.rstrip().endswith(":"), message  # never an empty reason


def test_cli_missing_dataset_exits_2_with_one_line_and_no_traceback(tmp_path):
    env = {**os.environ, **NO_NETWORK}
    proc = subprocess.run(
        [sys.executable, "-m", "ablations.train", "--dataset", "mnist", "--data-root", str(tmp_path), "--epochs", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mnist not found under") and "Traceback" not in proc.stderr


# ---- damaged files and misplaced roots (copies of the real files; the shared data is never touched) ----
REAL_RAW = resolve_data_root(None) / "MNIST" / "raw"
needs_mnist = pytest.mark.skipif(not REAL_RAW.is_dir(), reason="needs the real MNIST files")


def mnist_copy(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in REAL_RAW.iterdir():
        shutil.copyfile(source, raw / source.name)
    return raw


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@needs_mnist
@pytest.mark.parametrize(
    "name,damage,why",
    [
        ("train-images-idx3-ubyte", lambda b: b[: len(b) // 2], "23,520,008 bytes where its header promises 47,040,016"),
        ("t10k-images-idx3-ubyte", lambda b: os.urandom(len(b)), "not an idx file of 3-d unsigned bytes"),
        ("train-labels-idx1-ubyte", lambda b: os.urandom(len(b)), "not an idx file of 1-d unsigned bytes"),
        ("t10k-labels-idx1-ubyte", lambda b: b[:4] + (1000).to_bytes(4, "big") + b[8:1008], "1,000 labels for 10,000 images"),
    ],
    ids=["truncated images", "garbage images", "garbage labels", "labels of another split"],
)
def test_a_damaged_mnist_file_is_named_with_what_to_do(tmp_path, name, damage, why):
    raw = mnist_copy(tmp_path)
    path = raw / name
    path.write_bytes(damage(path.read_bytes()))
    before = tree(tmp_path)
    with pytest.raises(UserError) as err:
        load_dataset("mnist", data_root=str(tmp_path))
    assert str(err.value) == f"{path} is damaged ({why}); delete it to download it again, or restore it from a copy"
    assert tree(tmp_path) == before


@needs_mnist
@pytest.mark.parametrize("depth", ["MNIST", "MNIST/raw"])
def test_a_data_root_one_level_too_deep_says_where_to_point_and_writes_nothing(tmp_path, depth):
    mnist_copy(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(UserError, match=rf"looks like a dataset folder itself .* holds MNIST/, e\.g\. {tmp_path}$"):
        load_dataset("mnist", data_root=str(tmp_path / depth))
    assert tree(tmp_path) == before  # no MNIST/MNIST/raw inside the user's folder


def test_a_failed_download_leaves_the_data_root_as_it_was(monkeypatch, tmp_path):
    for key, value in NO_NETWORK.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "mine.txt").write_text("the user's own file")
    with pytest.raises(UserError, match="download failed"):
        load_dataset("mnist", data_root=str(tmp_path))
    with pytest.raises(UserError, match="download failed"):
        load_dataset("mnist", data_root=str(tmp_path / "new" / "deeper"))
    assert tree(tmp_path) == {"mine.txt": 19}


def test_a_class_too_small_for_a_balanced_validation_split_says_which_size_fits():
    labels = torch.tensor([0] * 1000 + [1] * 50)  # an imbalanced folder: 1,000 cats, 50 dogs
    images = torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8)
    ds = TensorDataset("imagefolder:/pets", images, labels, images[:10], labels[:10], 2)
    with pytest.raises(UserError, match="takes 53 of every class.*smallest class .* has 50 .*at most 98"):
        hold_out_validation(ds, None)  # the default: a tenth of 1,050
    assert torch.bincount(hold_out_validation(ds, 98).val_labels).tolist() == [49, 49]
