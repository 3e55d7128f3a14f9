"""One run: `build_run` sets it up, the loop trains and evaluates it (`loop.py`), `run_one` executes it
with its provenance (`execute.py`); the device and precision it runs with (`devices.py`). Runs of a grid
that differ only in seed, augmentation, weight decay and schedule can train as one model: `run_pack`
(`execute.py`) through the packed loop (`packed_loop.py`, `packed_model.py`, `packed_sgd.py`).

Knows nothing of grids, stores or trackers: those call it (import-linter checks this)."""
