"""Runs in MLflow and TensorBoard: live logging and exports (`live.py`), the writers (`trackers.py`)."""
