"""Batched colour math on float (N, C, H, W) images in [0, 1], with torchvision's formulas."""

from __future__ import annotations

import torch

# ITU-R 601 luma, as torchvision's rgb_to_grayscale: the gray level contrast blends toward.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB -> hue (fraction of the circle), saturation, value: each (N, H, W)."""
    r, g, b = x.unbind(1)
    val, chroma = x.amax(dim=1), x.amax(dim=1) - x.amin(dim=1)
    sat = chroma / torch.where(val > 0, val, 1.0)
    safe = torch.where(chroma > 0, chroma, 1.0)  # gray pixels get hue 0
    hue = torch.where(val == r, (g - b) / safe, torch.where(val == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    return (hue / 6) % 1.0, sat, val


def hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    # channel n in (5, 3, 1) = (R, G, B): v * (1 - s * clamp(min(k, 4 - k), 0, 1)), k = (n + 6h) mod 6
    n = torch.arange(5, 0, -2, device=hue.device, dtype=hue.dtype).view(1, 3, 1, 1)
    k = (n + 6 * hue.unsqueeze(1)) % 6
    return val.unsqueeze(1) * (1 - sat.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))
