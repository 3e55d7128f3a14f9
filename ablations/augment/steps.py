"""The primitive augmentation steps, each with its batched math and its per-sample PIL reference.

A step is declared once and serves both paths:
- batched: `sample` draws (N,) parameters from a torch.Generator; a geometric step gives
  `matrix`, a 3x3 per sample in PIL's continuous pixel coordinates (pixel i covers [i, i+1))
  mapping an output position to the input position it samples, and `fills` (it reads outside
  its input canvas, where PIL puts zeros); a photometric step gives `apply` on [0, 1] floats.
- reference, in the teaching notebook's style: `reference_random` is the torchvision transform
  that draws its own parameters per image, as the notebook's Compose does; `reference_fixed`
  is the same operation with one sample's parameters through `torchvision.transforms.functional`,
  which the tests run next to the batched path. Rotation is bilinear in both (torchvision's
  default is nearest) so that the two can be compared.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ablations.augment.color import grayscale, hsv_to_rgb, rgb_to_hsv

BILINEAR = InterpolationMode.BILINEAR


class Step:
    kind = ""
    geometric = True
    fills = False
    rgb_only = False  # needs 3 channels
    size_in = size_out = 0  # px of the square canvas read and written (geometric steps)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def matrix(self, p: dict, n: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        raise NotImplementedError

    def reference_random(self) -> torch.nn.Module:
        """A torchvision transform drawing its own parameters on each call."""
        raise NotImplementedError

    def reference_fixed(self, image: Image.Image, p: dict) -> Image.Image:
        """`p` holds this step's parameters for one sample as Python scalars."""
        raise NotImplementedError


# ---- geometric -----------------------------------------------------------------------------
class Resize(Step):
    kind = "resize"

    def __init__(self, *, size_in: int, size_out: int):
        self.size_in, self.size_out = size_in, size_out

    def matrix(self, p, n, device):
        scale = self.size_in / self.size_out  # input px per output px
        return affine(n, device, sx=scale, sy=scale)

    def reference_random(self):
        return T.Resize(self.size_out, interpolation=BILINEAR)

    def reference_fixed(self, image, p):
        return TF.resize(image, [self.size_out, self.size_out], interpolation=BILINEAR)


class Flip(Step):
    def __init__(self, *, size: int, horizontal: bool):
        self.size_in = self.size_out = size
        self.horizontal = horizontal
        self.kind = "hflip" if horizontal else "vflip"

    def sample(self, n, generator):
        return {"flip": uniform(n, 0.0, 1.0, generator) < 0.5}

    def matrix(self, p, n, device):
        flip = p["flip"].float()
        sign, shift = 1 - 2 * flip, flip * self.size_out  # flipped: x -> size - x (px)
        if self.horizontal:
            return affine(n, device, sx=sign, tx=shift)
        return affine(n, device, sy=sign, ty=shift)

    def reference_random(self):
        return T.RandomHorizontalFlip(0.5) if self.horizontal else T.RandomVerticalFlip(0.5)

    def reference_fixed(self, image, p):
        if not p["flip"]:
            return image
        return TF.hflip(image) if self.horizontal else TF.vflip(image)


class Crop(Step):
    """RandomCrop(size_out) of the input zero-padded by `padding` px on every side."""

    kind = "crop"

    def __init__(self, *, size_in: int, size_out: int, padding: int = 0):
        self.size_in, self.size_out, self.padding = size_in, size_out, padding
        self.fills = padding > 0

    def sample(self, n, generator):
        span = self.size_in + 2 * self.padding - self.size_out + 1  # valid offsets per axis
        return {key: torch.randint(span, (n,), generator=generator, device=generator.device)
                for key in ("top", "left")}

    def matrix(self, p, n, device):
        pad = float(self.padding)
        return affine(n, device, tx=p["left"].float() - pad, ty=p["top"].float() - pad)

    def reference_random(self):
        return T.RandomCrop(self.size_out, padding=self.padding or None)

    def reference_fixed(self, image, p):
        if self.padding:
            image = TF.pad(image, self.padding, fill=0)
        return TF.crop(image, p["top"], p["left"], self.size_out, self.size_out)


class CenterCrop(Step):
    kind = "center_crop"

    def __init__(self, *, size_in: int, size_out: int):
        self.size_in, self.size_out = size_in, size_out
        # torchvision's rounding of the centred window, so both paths cut the same pixels
        self.offset = float(int(round((size_in - size_out) / 2.0)))

    def matrix(self, p, n, device):
        return affine(n, device, tx=self.offset, ty=self.offset)

    def reference_random(self):
        return T.CenterCrop(self.size_out)

    def reference_fixed(self, image, p):
        return TF.center_crop(image, [self.size_out, self.size_out])


class Rotate(Step):
    """RandomRotation about the canvas centre, zero fill, as PIL's rotate."""

    kind = "rotate"
    fills = True

    def __init__(self, *, size: int, degrees: float):
        self.size_in = self.size_out = size
        self.degrees = degrees

    def sample(self, n, generator):
        return {"angle": uniform(n, -self.degrees, self.degrees, generator)}

    def matrix(self, p, n, device):
        rad = torch.deg2rad(p["angle"].float())
        cos, sin, c = rad.cos(), rad.sin(), self.size_out / 2  # c: canvas centre (px)
        # PIL: input = R (output - c) + c with R = [[cos, -sin], [sin, cos]] (y points down)
        return affine(n, device, sx=cos, shx=-sin, tx=c * (1 - cos + sin),
                      shy=sin, sy=cos, ty=c * (1 - sin - cos))

    def reference_random(self):
        return T.RandomRotation(self.degrees, interpolation=BILINEAR, fill=0)

    def reference_fixed(self, image, p):
        return TF.rotate(image, p["angle"], interpolation=BILINEAR, fill=0)


# ---- photometric ---------------------------------------------------------------------------
class _Jitter(Step):
    """A ColorJitter part: per-sample factor ~ U[1 - strength, 1 + strength]."""

    geometric = False

    def __init__(self, *, strength: float):
        self.strength = strength

    def sample(self, n, generator):
        return {"factor": uniform(n, 1 - self.strength, 1 + self.strength, generator)}

    def reference_random(self):
        # one ColorJitter per step keeps the policy's order (ColorJitter shuffles its own parts)
        return T.ColorJitter(**{self.kind: self.strength})


class Brightness(_Jitter):
    kind = "brightness"

    def apply(self, x, p):
        return (x * p["factor"].view(-1, 1, 1, 1)).clamp(0, 1)

    def reference_fixed(self, image, p):
        return TF.adjust_brightness(image, p["factor"])


class Contrast(_Jitter):
    kind = "contrast"

    def apply(self, x, p):
        factor = p["factor"].view(-1, 1, 1, 1)
        mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # one gray level per image
        return (factor * x + (1 - factor) * mean).clamp(0, 1)

    def reference_fixed(self, image, p):
        return TF.adjust_contrast(image, p["factor"])


class Hue(_Jitter):
    """Per-sample hue shift ~ U[-strength, strength], a fraction of the hue circle."""

    kind = "hue"
    rgb_only = True

    def sample(self, n, generator):
        return {"shift": uniform(n, -self.strength, self.strength, generator)}

    def apply(self, x, p):
        hue, sat, val = rgb_to_hsv(x)
        return hsv_to_rgb((hue + p["shift"].view(-1, 1, 1)) % 1.0, sat, val)

    def reference_fixed(self, image, p):
        return TF.adjust_hue(image, p["shift"])


# ---- helpers -------------------------------------------------------------------------------
def affine(n: int, device: torch.device, *, sx=1.0, shx=0.0, tx=0.0, shy=0.0, sy=1.0, ty=0.0) -> torch.Tensor:
    """(n, 3, 3) matrices with u = sx*x + shx*y + tx, v = shy*x + sy*y + ty; scalars or (n,)."""
    def column(v):  # torch.full, not torch.tensor: no host-to-device copy
        return v.float() if torch.is_tensor(v) else torch.full((n,), float(v), device=device)
    return torch.stack([column(v) for v in (sx, shx, tx, shy, sy, ty, 0, 0, 1)], dim=-1).view(n, 3, 3)


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low
