"""Batched augmentation: policies by name (`policy.py`) built from ops (`ops.py`), each a few primitive
steps (`steps.py`, colour math in `color.py`) carrying both the batched tensor math and the PIL reference."""

from ablations.augment.policy import Policy, build_policy

__all__ = ["Policy", "build_policy"]
