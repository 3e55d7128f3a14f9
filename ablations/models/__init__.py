"""Models by name: the notebook's ResNet kept bit for bit (`notebook.py`), torchvision and timm classifiers
(`zoo.py`), and the shapes-only check that a model can take its input size (`input_probe.py`)."""

from ablations.models.notebook import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]
