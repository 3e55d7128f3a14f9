"""The per-sample PIL reference of `ablations.augment`, in the teaching notebook's style.

Each primitive step of a policy has a random torchvision transform (`random_transforms`, which
draws its own parameters per image, as the notebook's Compose does) and the same operation with
one sample's fixed parameters through `torchvision.transforms.functional` (`fixed_step`): the
tests run the latter next to the batched path with identical parameters. Rotation uses bilinear
interpolation (torchvision's default is nearest) so that the two paths can be compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

if TYPE_CHECKING:
    from ablations.augment import Policy

BILINEAR = InterpolationMode.BILINEAR


def train_compose(policy: Policy) -> T.Compose:
    steps = [t for step in policy.steps for t in random_transforms(step)]
    return T.Compose(steps + to_tensor(policy.channels))


def eval_compose(policy: Policy) -> T.Compose:
    resize = [T.Resize(policy.out_size, interpolation=BILINEAR)] if policy.native_size != policy.out_size else []
    return T.Compose(resize + to_tensor(policy.channels))


def apply_fixed(policy: Policy, image: Image.Image, params: dict, index: int) -> torch.Tensor:
    """Run the policy's steps on one PIL image with sample `index`'s parameters."""
    for i, step in enumerate(policy.steps):
        fixed = {key: value[index].item() for key, value in policy.step_params(params, i).items()}
        image = fixed_step(step, image, fixed)
    return T.Compose(to_tensor(policy.channels))(image)


def to_tensor(channels: int) -> list:
    half = (0.5,) * channels  # the notebook's Normalize(0.5, 0.5): [0, 1] -> [-1, 1]
    return [T.ToTensor(), T.Normalize(half, half)]


def random_transforms(step) -> list:
    """The torchvision transform(s) for one step; each call on an image draws new parameters."""
    kind = step.kind
    if kind == "resize":
        return [T.Resize(step.size_out, interpolation=BILINEAR)]
    if kind in ("hflip", "vflip"):
        return [T.RandomHorizontalFlip(0.5) if kind == "hflip" else T.RandomVerticalFlip(0.5)]
    if kind == "crop":
        return [T.RandomCrop(step.size_out, padding=step.padding or None)]
    if kind == "center_crop":
        return [T.CenterCrop(step.size_out)]
    if kind == "rotate":
        return [T.RandomRotation(step.degrees, interpolation=BILINEAR, fill=0)]
    if kind in ("brightness", "contrast", "hue"):
        # one ColorJitter per op keeps the policy's order (ColorJitter shuffles its own parts)
        return [T.ColorJitter(**{kind: step.strength})]
    raise AssertionError(f"no reference for step {kind!r}")


def fixed_step(step, image: Image.Image, p: dict) -> Image.Image:
    """One step on one PIL image; `p` holds this step's parameters as Python scalars."""
    kind = step.kind
    if kind == "resize":
        return TF.resize(image, [step.size_out, step.size_out], interpolation=BILINEAR)
    if kind in ("hflip", "vflip"):
        if not p["flip"]:
            return image
        return TF.hflip(image) if kind == "hflip" else TF.vflip(image)
    if kind == "crop":
        if step.padding:
            image = TF.pad(image, step.padding, fill=0)
        return TF.crop(image, p["top"], p["left"], step.size_out, step.size_out)
    if kind == "center_crop":
        return TF.center_crop(image, [step.size_out, step.size_out])
    if kind == "rotate":
        return TF.rotate(image, p["angle"], interpolation=BILINEAR, fill=0)
    if kind == "brightness":
        return TF.adjust_brightness(image, p["factor"])
    if kind == "contrast":
        return TF.adjust_contrast(image, p["factor"])
    if kind == "hue":
        return TF.adjust_hue(image, p["shift"])
    raise AssertionError(f"no reference for step {kind!r}")
