"""Fixtures shared by tests/ and bench/: the device, a tiny learnable dataset, real MNIST, temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # Offline checkouts keep MNIST beside the repo; a set variable always wins.
    if "ABLATIONS_DATA_ROOT" not in os.environ and (SHARED_DATA / "MNIST" / "raw").is_dir():
        os.environ["ABLATIONS_DATA_ROOT"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def device():
    """Tests run on CPU unless ABLATIONS_TEST_DEVICE names another device (e.g. cuda)."""
    import torch

    return torch.device(os.environ.get("ABLATIONS_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def synthetic(device):
    """The small learnable dataset (1,024 train / 512 test, 10 classes, 28 px), on the device."""
    from ablations.data.dataset import load_dataset

    return load_dataset("synthetic", device=device)


@pytest.fixture(scope="session")
def mnist_small(device):
    """Real MNIST: a class-balanced 5,000-image training subset and 2,000 test images."""
    from ablations.data.dataset import load_dataset

    return load_dataset("mnist", train_subset=5000, test_subset=2000, device=device)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    path = tmp_path / "results"
    path.mkdir()
    return path
