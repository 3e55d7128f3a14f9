"""Datasets as uint8 tensors on the training device: torchvision classes by name (`torchvision_datasets.py`),
image folders (`image_folder.py`), a synthetic set, the validation split and subsets (`dataset.py`); where the
files are (`root.py`, no torch). Nothing is imported here, so that the data root resolves without torch."""
