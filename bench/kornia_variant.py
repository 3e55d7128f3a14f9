"""Kornia's batched augmentation (`kornia.augmentation`) for the policies it can express as the suite does.

Like the suite's batched path, Kornia augments a whole batch in one call on the device and draws
each sample's random parameters itself (from torch's global generator). `KorniaAugment` takes
the same uint8 (N, C, native, native) images and returns the same normalized float32 output as
`Policy.apply`, one Kornia module per step of the policy:

- resize: `Resize(out, bilinear, align_corners=False)`, which is PIL's pixel-centre bilinear when
  enlarging (Kornia's default `align_corners=True` stretches the corner pixels instead), with
  antialiasing when shrinking;
- hflip, vflip: `RandomHorizontalFlip` / `RandomVerticalFlip`, p = 0.5;
- crop: `RandomCrop(out, padding, fill=0)`, an exact slice of the zero-padded canvas;
- rotate: `RandomRotation(degrees, bilinear, p=1)` about the canvas centre, zero fill. Kornia's
  `grid_sample(padding_mode="zeros")` blends the image with zero within half a pixel of the
  canvas edge, where PIL still clamps to the edge pixel: the two agree wherever the border is
  dark (MNIST digits) and differ in that outer ring on images bright up to their edge;
- brightness: `ColorJitter(brightness=s, order=(0,))`, `x * factor` clamped, as torchvision;
- contrast: `ColorJitter(contrast=s, order=(1,))`, a blend toward each image's gray mean, as
  torchvision. Kornia before 0.9.0 blended 1-channel images toward the mean of the whole batch;
  and `order` (new in 0.9) runs that one part of ColorJitter alone: hence kornia>=0.9.

Not used: `RandomBrightness` adds `factor - 1` to the pixels and `RandomContrast` multiplies them
by `factor` (no mean), where torchvision's brightness multiplies and its contrast blends toward
the mean: the same factor ranges, other operations. Not covered: `none` (nothing of Kornia's
would run); hue and center_crop are not wired up (no benchmark here runs them).
"""

from __future__ import annotations

import torch

from ablations.augment.policy import Policy

KINDS = ("resize", "hflip", "vflip", "crop", "rotate", "brightness", "contrast")


def not_covered(policy: Policy) -> str | None:
    """Why Kornia cannot run `policy` as the suite does, or None where it can."""
    if not policy.steps:
        return "no augmentation: nothing of Kornia's would run"
    missing = [step.kind for step in policy.steps if step.kind not in KINDS]
    return f"no Kornia counterpart wired up for {missing[0]!r}" if missing else None


class KorniaAugment(torch.nn.Module):
    """`policy` as a `kornia.augmentation.AugmentationSequential`: uint8 images in, normalized float32 out."""

    def __init__(self, policy: Policy):
        super().__init__()
        reason = not_covered(policy)
        if reason is not None:
            raise ValueError(f"policy {policy.name!r}: {reason}")
        import kornia.augmentation as K

        self.policy = policy
        self.augment = K.AugmentationSequential(*[_module(K, step) for step in policy.steps])

    def forward(self, images: torch.Tensor, params: list | None = None) -> torch.Tensor:
        """Fresh per-sample parameters from torch's global generator, or the given `params`
        (from `sample`), as Kornia's `params=`."""
        x = images.float() / 255
        x = self.augment(x) if params is None else self.augment(x, params=params)
        return (x - 0.5) / 0.5  # the notebook's Normalize(0.5, 0.5): [0, 1] -> [-1, 1]

    def sample(self, images: torch.Tensor) -> list:
        """Kornia's parameters for this batch, one ParamItem per step."""
        return self.augment.forward_parameters(images.shape)

    def suite_params(self, params: list) -> dict[str, torch.Tensor]:
        """Kornia's parameters as the suite's parameter dict (`Policy.sample`'s keys), for
        `Policy.reference_apply` and `Policy.apply`."""
        out = {}
        for i, (step, item) in enumerate(zip(self.policy.steps, params, strict=True)):
            data, prefix = item.data, f"{i}.{step.kind}."
            if step.kind in ("hflip", "vflip"):
                out[prefix + "flip"] = data["batch_prob"].cpu() > 0.5
            elif step.kind == "crop":
                corner = data["src"][:, 0].round().long().cpu()  # (x, y) of the window's top left
                out[prefix + "left"], out[prefix + "top"] = corner[:, 0], corner[:, 1]
            elif step.kind == "rotate":
                out[prefix + "angle"] = data["degrees"].float().cpu()
            elif step.kind in ("brightness", "contrast"):
                out[prefix + "factor"] = data[f"{step.kind}_factor"].float().cpu()
        return out


def _module(K, step) -> torch.nn.Module:
    kind = step.kind
    if kind == "resize":
        return K.Resize((step.size_out, step.size_out), resample="bilinear", align_corners=False,
                        antialias=step.size_out < step.size_in)
    if kind == "hflip":
        return K.RandomHorizontalFlip(p=0.5)
    if kind == "vflip":
        return K.RandomVerticalFlip(p=0.5)
    if kind == "crop":
        return K.RandomCrop((step.size_out, step.size_out), padding=step.padding or None, fill=0)
    if kind == "rotate":
        return K.RandomRotation(step.degrees, resample="bilinear", p=1.0)
    if kind in ("brightness", "contrast"):
        # one part of ColorJitter, as the suite's steps: order fixes which part runs
        return K.ColorJitter(**{kind: step.strength}, order=(0 if kind == "brightness" else 1,))
    raise AssertionError(f"no Kornia module for {kind!r}")
