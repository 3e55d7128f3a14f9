"""Named augmentation policies for 28 px MNIST-like and 32 px CIFAR-10 uint8 images.

`Policy.apply` is the batched path for uint8 (N, C, H, W) images kept on the training device,
each sample with its own random parameters. Every geometric step (resize, crop, flip,
rotation) is one 3x3 matrix per sample, in PIL's continuous pixel coordinates (pixel i covers
[i, i+1)), mapping an output position to the input position it samples; the chain multiplies
into one matrix and a single `grid_sample` goes from the native-size images straight to the
output size, times a 1-channel mask of where PIL's step-by-step chain shows zero fill
(`_coverage`). Photometric steps are per-sample scalars broadcast over the batch.
`ablations.augment_reference` holds the per-sample PIL reference the tests check it against.
One warp interpolates once where the reference may interpolate twice (rotate after a resize),
so such chains come out slightly sharper; and a train-side warp that shrinks (output smaller
than the canvas) is not antialiased, unlike PIL.

Parameter dict (`Policy.sample`): one (N,) tensor per key "<i>.<kind>.<param>", <i> being the
step's index in `Policy.steps` (geometric steps in policy order, a final resize if the canvas
is not the output size, then photometric steps in policy order):
    "<i>.hflip.flip", "<i>.vflip.flip"              bool, True = flipped
    "<i>.crop.top", "<i>.crop.left"                 int64 px, window offset in the zero-padded
                                                    input canvas, 0 .. in + 2*pad - out
    "<i>.rotate.angle"                              float32 degrees, counter-clockwise
    "<i>.brightness.factor", "<i>.contrast.factor"  float32 multipliers
    "<i>.hue.shift"                                 float32 fraction of the hue circle
E.g. "seed" at 96 px from 28 px: steps resize, hflip, crop; keys "1.hflip.flip",
"2.crop.top", "2.crop.left".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from ablations import augment_reference as reference
from ablations.config import AUGMENT_OPS, split_policy
from ablations.errors import UserError, unknown_name

# The notebook demo rotates a photo by up to 45 degrees; on digits that turns a 1 into a 7
# and moves 6 and 9 toward each other, so +-15 degrees keeps the labels true.
ROTATE_DEGREES = 15.0
# ColorJitter strength: brightness/contrast factor ~ U[0.5, 1.5], hue shift ~ U[-0.5, 0.5].
JITTER = 0.5
# The notebook resizes to 120 px before RandomCrop(96): the crop keeps 80% of each side.
SEED_ZOOM = 120 / 96
# ITU-R 601 luma, as torchvision's rgb_to_grayscale: the gray level contrast blends toward.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
GEOMETRIC_OPS = ("seed", "crop", "center_crop", "hflip", "vflip", "rotate")
PHOTOMETRIC_OPS = ("brightness", "contrast", "hue")


# ---- primitive steps -----------------------------------------------------------------------
class _Step:
    """Geometric steps give `matrix` (output px -> input px) and `fills` (reads outside its
    input canvas, where PIL puts zeros); photometric ones give `apply` on [0, 1] floats."""

    kind = ""
    geometric = True
    fills = False

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {}


class Resize(_Step):
    kind = "resize"

    def __init__(self, *, size_in: int, size_out: int):
        self.size_in, self.size_out = size_in, size_out

    def matrix(self, p: dict, n: int, device: torch.device) -> torch.Tensor:
        scale = self.size_in / self.size_out  # input px per output px
        return _affine(n, device, sx=scale, sy=scale)


class Flip(_Step):
    def __init__(self, *, size: int, horizontal: bool):
        self.size_in = self.size_out = size
        self.horizontal = horizontal
        self.kind = "hflip" if horizontal else "vflip"

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"flip": _uniform(n, 0.0, 1.0, generator) < 0.5}

    def matrix(self, p: dict, n: int, device: torch.device) -> torch.Tensor:
        flip = p["flip"].float()
        sign, shift = 1 - 2 * flip, flip * self.size_out  # flipped: x -> size - x (px)
        if self.horizontal:
            return _affine(n, device, sx=sign, tx=shift)
        return _affine(n, device, sy=sign, ty=shift)


class Crop(_Step):
    """RandomCrop(size_out) of the input zero-padded by `padding` px on every side."""

    kind = "crop"

    def __init__(self, *, size_in: int, size_out: int, padding: int = 0):
        self.size_in, self.size_out, self.padding = size_in, size_out, padding
        self.fills = padding > 0

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        span = self.size_in + 2 * self.padding - self.size_out + 1  # valid offsets per axis
        return {key: torch.randint(span, (n,), generator=generator, device=generator.device)
                for key in ("top", "left")}

    def matrix(self, p: dict, n: int, device: torch.device) -> torch.Tensor:
        pad = float(self.padding)
        return _affine(n, device, tx=p["left"].float() - pad, ty=p["top"].float() - pad)


class CenterCrop(_Step):
    kind = "center_crop"

    def __init__(self, *, size_in: int, size_out: int):
        self.size_in, self.size_out = size_in, size_out
        # torchvision's rounding of the centred window, so both paths cut the same pixels
        self.offset = float(int(round((size_in - size_out) / 2.0)))

    def matrix(self, p: dict, n: int, device: torch.device) -> torch.Tensor:
        return _affine(n, device, tx=self.offset, ty=self.offset)


class Rotate(_Step):
    """RandomRotation about the canvas centre, zero fill, as PIL's rotate."""

    kind = "rotate"
    fills = True

    def __init__(self, *, size: int, degrees: float):
        self.size_in = self.size_out = size
        self.degrees = degrees

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"angle": _uniform(n, -self.degrees, self.degrees, generator)}

    def matrix(self, p: dict, n: int, device: torch.device) -> torch.Tensor:
        rad = torch.deg2rad(p["angle"].float())
        cos, sin, c = rad.cos(), rad.sin(), self.size_out / 2  # c: canvas centre (px)
        # PIL: input = R (output - c) + c with R = [[cos, -sin], [sin, cos]] (y points down)
        return _affine(n, device, sx=cos, shx=-sin, tx=c * (1 - cos + sin),
                       shy=sin, sy=cos, ty=c * (1 - sin - cos))


class _Jitter(_Step):
    """A ColorJitter part: per-sample factor ~ U[1 - strength, 1 + strength]."""

    geometric = False

    def __init__(self, *, strength: float):
        self.strength = strength

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"factor": _uniform(n, 1 - self.strength, 1 + self.strength, generator)}


class Brightness(_Jitter):
    kind = "brightness"

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        return (x * p["factor"].view(-1, 1, 1, 1)).clamp(0, 1)


class Contrast(_Jitter):
    kind = "contrast"

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        factor = p["factor"].view(-1, 1, 1, 1)
        mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # one gray level per image
        return (factor * x + (1 - factor) * mean).clamp(0, 1)


class Hue(_Jitter):
    kind = "hue"

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"shift": _uniform(n, -self.strength, self.strength, generator)}

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        hue, sat, val = _rgb_to_hsv(x)
        return _hsv_to_rgb((hue + p["shift"].view(-1, 1, 1)) % 1.0, sat, val)


# ---- policy --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Policy:
    name: str
    ops: tuple[str, ...]
    native_size: int
    out_size: int
    channels: int
    steps: tuple[_Step, ...]

    def sample(self, n: int, generator: torch.Generator, device=None) -> dict[str, torch.Tensor]:
        """Independent parameters for n samples, drawn with `generator`, placed on `device`."""
        device = torch.device(device) if device is not None else generator.device
        params = {}
        for i, step in enumerate(self.steps):
            for key, value in step.sample(n, generator).items():
                params[f"{i}.{step.kind}.{key}"] = _to_device(value, device)
        return params

    def apply(self, images: torch.Tensor, params: dict) -> torch.Tensor:
        """uint8 (N, C, native, native) -> normalized float32 (N, C, out, out)."""
        self._check(images)
        x = self._geometric(images.float() / 255, params)
        for i, step in enumerate(self.steps):
            if not step.geometric:
                x = step.apply(x, self.step_params(params, i))
        return _normalize(x)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.sample(images.shape[0], generator, images.device))

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        return _normalize(_resize(images.float() / 255, self.out_size))

    def reference_train(self) -> T.Compose:
        """PIL image in, normalized tensor out; each call draws new parameters."""
        return reference.train_compose(self)

    def reference_eval(self) -> T.Compose:
        return reference.eval_compose(self)

    def reference_apply(self, image: Image.Image, params: dict, index: int) -> torch.Tensor:
        """The PIL reference on one image with sample `index`'s parameters from `params`."""
        return reference.apply_fixed(self, image, params, index)

    def step_params(self, params: dict, i: int) -> dict[str, torch.Tensor]:
        """Step i's entries of `params`, keyed by the bare parameter name ("flip", "angle")."""
        prefix = f"{i}.{self.steps[i].kind}."
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    def _geometric(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        steps = [(i, s) for i, s in enumerate(self.steps) if s.geometric]
        if not steps:  # identity: nothing moves and native == out size
            return x
        if all(isinstance(s, Resize) for _, s in steps):  # only the size changes: as eval does
            return _resize(x, self.out_size)
        n, device = x.shape[0], x.device
        chain = [(step, step.matrix(self.step_params(params, i), n, device)) for i, step in steps]
        total = torch.eye(3, device=device).expand(n, 3, 3)
        for _, matrix in chain:
            total = total @ matrix
        grid = _grid(total, x.shape[-1], self.out_size)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled * _coverage(chain, n, device)

    def _check(self, images: torch.Tensor) -> None:
        want = (self.channels, self.native_size, self.native_size)
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"policy {self.name!r} takes uint8 images (N, {', '.join(map(str, want))}), "
                             f"got {images.dtype} {tuple(images.shape)}")


def build_policy(policy: str, *, native_size: int, out_size: int, channels: int) -> Policy:
    """The policy named by `policy` ("hflip+rotate") for square images with `channels` channels."""
    ops = split_policy(policy)
    for op in ops:
        if op not in AUGMENT_OPS:
            raise unknown_name("augmentation policy", op, AUGMENT_OPS)
    if len(ops) > 1 and "none" in ops:
        raise UserError(f"augment {policy!r}: 'none' cannot be combined with other policies")
    if "hue" in ops and channels != 3:
        raise UserError(f"augmentation 'hue' needs RGB data (3 channels, e.g. dataset cifar10); "
                        f"this data has {channels} channel(s)")
    if channels not in (1, 3) or native_size < 1 or out_size < 1:
        raise ValueError(f"need 1 or 3 channels and sizes >= 1 px, got {channels=} {native_size=} {out_size=}")
    steps: list[_Step] = []
    for op in ops:
        if op in GEOMETRIC_OPS:
            steps += _geometric_steps(op, steps[-1].size_out if steps else native_size, out_size)
    canvas = steps[-1].size_out if steps else native_size
    if canvas != out_size:
        steps.append(Resize(size_in=canvas, size_out=out_size))
    photometric = {"brightness": Brightness, "contrast": Contrast, "hue": Hue}
    steps += [photometric[op](strength=JITTER) for op in ops if op in PHOTOMETRIC_OPS]
    return Policy(name="+".join(ops), ops=ops, native_size=native_size, out_size=out_size,
                  channels=channels, steps=tuple(steps))


def _geometric_steps(op: str, canvas: int, out: int) -> list[_Step]:
    """The primitive steps of one geometric op on a `canvas`-px image, for output size `out` px."""
    zoom = round(out * SEED_ZOOM)  # 120 px at out = 96, as the notebook
    if op == "seed":
        return [Resize(size_in=canvas, size_out=zoom), Flip(size=zoom, horizontal=True),
                Crop(size_in=zoom, size_out=out)]
    if op == "center_crop":
        return [Resize(size_in=canvas, size_out=zoom), CenterCrop(size_in=zoom, size_out=out)]
    if op == "crop":  # the CIFAR classic: 4 px of padding at 32 px (and at 28 px)
        return [Crop(size_in=canvas, size_out=canvas, padding=round(canvas / 8))]
    if op == "rotate":
        return [Rotate(size=canvas, degrees=ROTATE_DEGREES)]
    return [Flip(size=canvas, horizontal=op == "hflip")]


# ---- tensor helpers ------------------------------------------------------------------------
def _affine(n: int, device: torch.device, *, sx=1.0, shx=0.0, tx=0.0, shy=0.0, sy=1.0, ty=0.0) -> torch.Tensor:
    """(n, 3, 3) matrices with u = sx*x + shx*y + tx, v = shy*x + sy*y + ty; scalars or (n,)."""
    def column(v):  # torch.full, not torch.tensor: no host-to-device copy
        return v.float() if torch.is_tensor(v) else torch.full((n,), float(v), device=device)
    return torch.stack([column(v) for v in (sx, shx, tx, shy, sy, ty, 0, 0, 1)], dim=-1).view(n, 3, 3)


def _grid(matrix: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """(N, size_out, size_out, 2) normalized input positions for pixel matrices (N, 3, 3)."""
    # align_corners=False: input n = 2u/size_in - 1 and output x = (m + 1) * size_out/2
    linear, shift = matrix[:, :2, :2], matrix[:, :2, 2]
    offset = (linear.sum(-1) * (size_out / 2) + shift) * (2 / size_in) - 1
    theta = torch.cat([linear * (size_out / size_in), offset.unsqueeze(-1)], dim=-1)
    return F.affine_grid(theta, [matrix.shape[0], 1, size_out, size_out], align_corners=False)


def _coverage(chain: list, n: int, device: torch.device) -> torch.Tensor | float:
    """The share of image (not zero fill) in each output px, as PIL's step-by-step chain has it.

    A step that reads outside its input canvas (padded crop, rotation) puts zeros there, and a
    later interpolation (rotate, resize) blends them into the image's edge. The image itself
    takes one grid_sample; this 1-channel mask follows the chain step by step from the first
    such step, so composed warps keep PIL's zeros and soft fill edges (crop+rotate).
    """
    first = next((k for k, (step, _) in enumerate(chain) if step.fills), None)
    if first is None:  # nothing reads outside its canvas: all image
        return 1.0
    size = chain[first][0].size_in
    cover = torch.ones(n, 1, size, size, device=device)
    for step, matrix in chain[first:]:
        grid = _grid(matrix, cover.shape[-1], step.size_out)
        # PIL: zero outside the input canvas, bilinear with taps clamped at its edge inside
        inside = (grid.abs() <= 1).all(dim=-1).unsqueeze(1)
        cover = F.grid_sample(cover, grid, mode="bilinear", padding_mode="border", align_corners=False) * inside
    return cover


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    # antialias only matters when shrinking, where PIL's bilinear resize also widens its filter
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5  # the notebook's Normalize(0.5, 0.5): [0, 1] -> [-1, 1]


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device.type == "cpu" and device.type == "cuda":
        # pinned staging keeps the copy asynchronous: the train loop never waits on the GPU
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB in [0, 1] -> hue (fraction of the circle), saturation, value: (N, H, W)."""
    r, g, b = x.unbind(1)
    val, chroma = x.amax(dim=1), x.amax(dim=1) - x.amin(dim=1)
    sat = chroma / torch.where(val > 0, val, 1.0)
    safe = torch.where(chroma > 0, chroma, 1.0)  # gray pixels get hue 0
    hue = torch.where(val == r, (g - b) / safe, torch.where(val == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    return (hue / 6) % 1.0, sat, val


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    # channel n in (5, 3, 1) = (R, G, B): v * (1 - s * clamp(min(k, 4 - k), 0, 1)), k = (n + 6h) mod 6
    n = torch.arange(5, 0, -2, device=hue.device, dtype=hue.dtype).view(1, 3, 1, 1)
    k = (n + 6 * hue.unsqueeze(1)) % 6
    return val.unsqueeze(1) * (1 - sat.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))
