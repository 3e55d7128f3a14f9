"""A grid of runs: its spec from TOML (`spec.py`), the driver that stores each run as it ends
(`driver.py`), the executors that train them here or on Ray (`executors.py`, `ray_cluster.py`), and
which runs train as one model (`packs.py`, with the `--pack auto` probe in `pack_probe.py`)."""

from ablations.grid.spec import Grid, available_grids, load_grid, only

__all__ = ["Grid", "available_grids", "load_grid", "only"]
