"""The store of one grid: an SQLite file that queues, claims and keeps its runs (`sqlite.py`), and the
files it exports (`export.py`). `python -m ablations.store` is the `ablations store` command."""

from ablations.store.sqlite import STORE_NAME, Store, store_path

__all__ = ["STORE_NAME", "Store", "store_path"]
