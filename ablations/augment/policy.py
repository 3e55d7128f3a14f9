"""Named augmentation policies for 28 px MNIST-like and 32 px CIFAR-10 uint8 images.

A policy ("hflip+rotate") chains ops from the registry `ablations.augment.ops`; each op is a
few primitive steps (`ablations.augment.steps`) that carry both the batched math and the
per-sample PIL reference the tests check it against.

`Policy.apply` is the batched path for uint8 (N, C, H, W) images kept on the training device,
each sample with its own random parameters. Every geometric step (resize, crop, flip,
rotation) is one 3x3 matrix per sample, in PIL's continuous pixel coordinates (pixel i covers
[i, i+1)), mapping an output position to the input position it samples; the chain multiplies
into one matrix and a single `grid_sample` goes from the native-size images straight to the
output size, times a 1-channel mask of where PIL's step-by-step chain shows zero fill
(`_coverage`). Photometric steps are per-sample scalars broadcast over the batch.
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
E.g. "notebook" at 96 px from 28 px: steps resize, hflip, crop; keys "1.hflip.flip",
"2.crop.top", "2.crop.left".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from ablations.augment.ops import OPS, ROTATE_DEGREES
from ablations.augment.steps import BILINEAR, Resize, Step
from ablations.config import check_policy
from ablations.errors import UserError

# Geometric ops move pixels (they join the one warp); photometric ones only change values.
# Which steps an op makes does not depend on the sizes, so any size tells its family.
_AT_32_PX = {name: op(32, 32) for name, op in OPS.items()}
GEOMETRIC_OPS = tuple(name for name, steps in _AT_32_PX.items() if any(s.geometric for s in steps))
PHOTOMETRIC_OPS = tuple(name for name, steps in _AT_32_PX.items() if steps and not any(s.geometric for s in steps))

__all__ = ["GEOMETRIC_OPS", "PHOTOMETRIC_OPS", "ROTATE_DEGREES", "Policy", "build_policy"]


# ---- policy --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Policy:
    name: str
    ops: tuple[str, ...]
    native_size: int
    out_size: int
    channels: int
    steps: tuple[Step, ...]

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
        """Augment a batch with fresh parameters from `generator`, which this call advances.

        Pass the run's own augmentation stream: were it shared with the data order, runs that
        differ only in policy would draw different orders from the same seed (no longer paired)."""
        return self.apply(images, self.sample(images.shape[0], generator, images.device))

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        return _normalize(_resize(images.float() / 255, self.out_size))

    # The per-sample PIL reference, in the notebook's style: PIL image in, normalized tensor out.
    def reference_train(self) -> T.Compose:
        """Each call draws new parameters, from torch's global generator as torchvision does."""
        return T.Compose([step.reference_random() for step in self.steps] + self._to_tensor())

    def reference_eval(self) -> T.Compose:
        resize = [T.Resize(self.out_size, interpolation=BILINEAR)] if self.native_size != self.out_size else []
        return T.Compose(resize + self._to_tensor())

    def reference_apply(self, image: Image.Image, params: dict, index: int) -> torch.Tensor:
        """The PIL reference on one image with sample `index`'s parameters from `params`."""
        for i, step in enumerate(self.steps):
            fixed = {key: value[index].item() for key, value in self.step_params(params, i).items()}
            image = step.reference_fixed(image, fixed)
        return T.Compose(self._to_tensor())(image)

    def step_params(self, params: dict, i: int) -> dict[str, torch.Tensor]:
        """Step i's entries of `params`, keyed by the bare parameter name ("flip", "angle")."""
        prefix = f"{i}.{self.steps[i].kind}."
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    def _to_tensor(self) -> list:
        half = (0.5,) * self.channels  # the notebook's Normalize(0.5, 0.5): [0, 1] -> [-1, 1]
        return [T.ToTensor(), T.Normalize(half, half)]

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
    ops = check_policy(policy)
    geometric: list[Step] = []
    photometric: list[Step] = []
    canvas = native_size  # px of the image the next geometric step reads
    for op in ops:
        for step in OPS[op](canvas, out_size):
            if step.rgb_only and channels != 3:
                raise UserError(f"augmentation {op!r} needs RGB data (3 channels, e.g. dataset cifar10); "
                                f"this data has {channels} channel(s)")
            if step.geometric:
                geometric.append(step)
                canvas = step.size_out
            else:
                photometric.append(step)
    if channels not in (1, 3) or native_size < 1 or out_size < 1:
        raise ValueError(f"need 1 or 3 channels and sizes >= 1 px, got {channels=} {native_size=} {out_size=}")
    if canvas != out_size:  # the geometric ops leave another size: one more resize joins the warp
        geometric.append(Resize(size_in=canvas, size_out=out_size))
    # photometric steps run after the one warp, on the output-size image
    return Policy(name="+".join(ops), ops=ops, native_size=native_size, out_size=out_size,
                  channels=channels, steps=tuple(geometric + photometric))


# ---- tensor helpers ------------------------------------------------------------------------
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


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device.type == "cpu" and device.type == "cuda":
        # pinned staging keeps the copy asynchronous: the train loop never waits on the GPU
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
