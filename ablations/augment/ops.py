"""The augmentation ops by name: each one declared once, as the primitive steps it composes.

An op is a function of the canvas it starts on and the policy's output size (both px, square)
returning its steps (`ablations.augment.steps`), which carry both the batched math and the PIL
reference. `build_policy` chains the ops of a policy ("hflip+rotate"). `ablations.config` names
them (AUGMENT_OPS, checked at the edge without torch); adding an op is one entry there and one here.
This module stays free of torch: the steps are imported when an op is built.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from ablations.config import AUGMENT_OPS

if TYPE_CHECKING:
    from ablations.augment.steps import Step


def _steps() -> ModuleType:
    """ablations.augment.steps (torch, torchvision), imported only when an op is built."""
    from ablations.augment import steps as augment_steps  # torch: the config checks op names without it

    return augment_steps

# The notebook demo rotates a photo by up to 45 degrees; on digits that turns a 1 into a 7
# and moves 6 and 9 toward each other, so +-15 degrees keeps the labels true.
ROTATE_DEGREES = 15.0
# ColorJitter strength: brightness/contrast factor ~ U[0.5, 1.5], hue shift ~ U[-0.5, 0.5].
JITTER = 0.5
# The notebook resizes to 120 px before RandomCrop(96): the crop keeps 80% of each side.
NOTEBOOK_ZOOM = 120 / 96

Op = Callable[[int, int], "list[Step]"]  # (canvas px, output px) -> steps


def _notebook(canvas: int, out: int) -> list[Step]:
    zoom = round(out * NOTEBOOK_ZOOM)  # 120 px at out = 96, as the notebook
    s = _steps()
    return [s.Resize(size_in=canvas, size_out=zoom), s.Flip(size=zoom, horizontal=True),
            s.Crop(size_in=zoom, size_out=out)]


def _center_crop(canvas: int, out: int) -> list[Step]:
    zoom = round(out * NOTEBOOK_ZOOM)  # the notebook's crop, without the randomness
    return [_steps().Resize(size_in=canvas, size_out=zoom), _steps().CenterCrop(size_in=zoom, size_out=out)]


def _crop(canvas: int, out: int) -> list[Step]:
    # the CIFAR classic: 4 px of padding at 32 px (and at 28 px), the canvas keeps its size
    return [_steps().Crop(size_in=canvas, size_out=canvas, padding=round(canvas / 8))]


OPS: dict[str, Op] = {
    "none": lambda canvas, out: [],
    "notebook": _notebook,
    "crop": _crop,
    "center_crop": _center_crop,
    "hflip": lambda canvas, out: [_steps().Flip(size=canvas, horizontal=True)],
    "vflip": lambda canvas, out: [_steps().Flip(size=canvas, horizontal=False)],
    "rotate": lambda canvas, out: [_steps().Rotate(size=canvas, degrees=ROTATE_DEGREES)],
    "brightness": lambda canvas, out: [_steps().Brightness(strength=JITTER)],
    "contrast": lambda canvas, out: [_steps().Contrast(strength=JITTER)],
    "hue": lambda canvas, out: [_steps().Hue(strength=JITTER)],
}

if tuple(OPS) != AUGMENT_OPS:  # the vocabulary the config checks and the ops built here must agree
    raise ImportError(f"ablations.augment.ops implements {tuple(OPS)}, ablations.config names {AUGMENT_OPS}")
