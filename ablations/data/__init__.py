"""Datasets as uint8 tensors on the training device: torchvision classes by name, image folders,
a synthetic set; the validation split and subsets drawn the same way for all (`dataset.py`)."""

from ablations.data.dataset import DEFAULT_DATA_ROOT, TensorDataset, load_dataset, resolve_data_root

__all__ = ["DEFAULT_DATA_ROOT", "TensorDataset", "load_dataset", "resolve_data_root"]
