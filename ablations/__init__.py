"""ResNet ablation and benchmark suite: what augmentation, weight decay and learning-rate
decay each do to a ResNet on a small image dataset, with replicates and statistics.

The Python API (ablations.api), importable without loading torch or pandas:

    from ablations import TrainConfig, UserError, train, run_grid, load_runs, load_epochs, report
"""

from __future__ import annotations

import sys
import types

__version__ = "0.1.0"
__all__ = ["TrainConfig", "UserError", "load_epochs", "load_runs", "report", "run_grid", "train"]

# The API's train, run_grid and report share their names with the command modules
# (python -m ablations.train, ablations.run_grid, ablations.report). Importing a submodule sets
# it as an attribute of its package; these three names keep the functions instead. The modules
# stay reachable as `from ablations.run_grid import main` or sys.modules["ablations.run_grid"];
# `import ablations.run_grid as m` (which reads the attribute) gives the function.
_FUNCTIONS_OVER_MODULES = frozenset({"train", "run_grid", "report"})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        if name in _FUNCTIONS_OVER_MODULES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

from ablations.api import load_epochs, load_runs, report, run_grid, train  # noqa: E402
from ablations.config import TrainConfig  # noqa: E402
from ablations.errors import UserError  # noqa: E402
