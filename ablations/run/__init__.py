"""One run: `build_run` sets it up, the loop trains and evaluates it (`trainer.py`), `run_one` executes it
with its provenance (`execute.py`); the device and precision it runs with (`devices.py`).

Knows nothing of grids, stores or trackers: those call it (import-linter checks this)."""
