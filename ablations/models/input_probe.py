"""Which input sizes a model takes, found by trying it: forward passes on the meta device, which
compute shapes only (no memory, no arithmetic), so even a large network is tried in a fraction
of a second.

The notebook's ResNet states its input range; a torchvision or timm model states none, so
`check_input_size` runs it once at the run's size when it is built, and only if that fails
searches for the size to suggest. Where no size runs on the meta device (a model with an
operation that has no meta implementation, or a tensor kept outside its parameters and buffers),
the run's size is tried once on a real CPU batch, in eval mode, which changes no state.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.func import functional_call

from ablations.errors import UserError

MAX_SIZE = 1024  # px: the largest input tried when looking for one that fits
# Tried beside the doublings of the run's size: sizes models are built for (ImageNet's 224 and
# 256, Inception's 299, fine-tuning's 384), which doubling 28 or 32 px would step over.
USUAL_SIZES = (64, 96, 128, 224, 256, 299, 384, 512)
BATCH = 2  # images per try: BatchNorm in training mode needs more than one value per channel


def check_input_size(model: nn.Module, name: str, *, in_channels: int, num_classes: int, size: int) -> None:
    """Return if `model` maps (batch, in_channels, size, size) images to (batch, num_classes) logits;
    otherwise raise a one-line UserError that says which size to set."""
    def attempt(at: int, device: str = "meta") -> Exception | None:
        return _try(model, name, in_channels, num_classes, at, device=device)

    def fits(at: int) -> bool:
        return attempt(at) is None

    failure = attempt(size)
    if failure is None:
        return
    declared = declared_size(model)
    if declared is not None and declared != size and fits(declared):
        raise UserError(f"{name} takes {declared} px inputs, got {size} px; set --image-size {declared}")
    found = sizes_above(size, fits)
    if found is None:
        if not next(model.parameters()).is_meta:
            failure = attempt(size, "cpu")
            if failure is None:
                return  # it runs: only the meta device could not run it
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise UserError(f"{name} cannot run on {in_channels}-channel {size} px inputs: {reason}")
    first, smallest = found
    if smallest * 2 <= MAX_SIZE and fits(smallest * 2):
        raise UserError(f"{name} needs inputs of at least {smallest} px, got {size} px; set --image-size {smallest} "
                        "(or more)")
    # a narrow range (a model built for one size that rounds a few px): name the size it was found at
    raise UserError(f"{name} takes {first} px inputs, got {size} px; set --image-size {first}")


def sizes_above(size: int, fits) -> tuple[int, int] | None:
    """(the first, the smallest) size above `size`, up to MAX_SIZE, at which `fits(size)`: the first
    of the doublings of `size` and USUAL_SIZES, in increasing order, that fits; then bisection below
    it. Bisection assumes every size between the smallest and the first fits; where that is not so,
    the answer still fits. None if no size tried fits."""
    low, first = size, None
    doublings = {size * 2**k for k in range(1, 11)}
    for candidate in sorted(s for s in doublings | {*USUAL_SIZES, MAX_SIZE} if size < s <= MAX_SIZE):
        if fits(candidate):
            first = candidate
            break
        low = candidate
    if first is None:
        return None
    high = first
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return first, high


def declared_size(model: nn.Module) -> int | None:
    """The one input size a model says it is built for: torchvision's ViTs (`image_size`) and timm
    models with a fixed input size (`pretrained_cfg`); None for the rest."""
    size = getattr(model, "image_size", None)
    if isinstance(size, int):
        return size
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("fixed_input_size") and cfg.get("input_size"):
        return int(cfg["input_size"][-1])
    return None


def _try(model: nn.Module, name: str, in_channels: int, num_classes: int, size: int, *, device: str = "meta"):
    """None if the model runs on a (BATCH, in_channels, size, size) batch, else the exception it raised.
    On "meta" the model's own tensors stay where they are: the pass runs on shape-only stand-ins."""
    x = torch.zeros(BATCH, in_channels, size, size, device=device)
    try:
        if device == "meta":
            named = itertools.chain(model.named_parameters(), model.named_buffers())
            out = functional_call(model, {k: torch.empty_like(v, device="meta") for k, v in named}, (x,))
        else:
            training = model.training
            try:
                with torch.no_grad():
                    out = model.eval()(x)
            finally:
                model.train(training)
    except Exception as err:  # any failure to run at this size: the caller decides what it means
        return err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{name} returns {got} for a batch of {BATCH} images, not ({BATCH}, {num_classes}) "
                        "logits; the suite trains classifiers whose forward returns logits")
    return None
