"""ResNet ablation and benchmark suite: what augmentation, weight decay and learning-rate
decay each do to a ResNet on a small image dataset, with replicates and statistics.

The Python API is `ablations.api` (typed functions; importing it loads neither torch nor pandas):

    from ablations.api import TrainConfig, train, run_grid, load_runs, load_epochs, report
"""

from __future__ import annotations

from ablations.config import TrainConfig
from ablations.errors import UserError

__version__ = "0.1.0"
__all__ = ["TrainConfig", "UserError", "__version__"]
