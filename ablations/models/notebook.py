"""The notebook's ResNet, kept bit-for-bit, and a variant that runs at native 28/32 px; and
`build_model`, which also builds torchvision and timm classifiers by name (ablations.models.zoo).

Faithful details (shared/seed-notebook.md): relu after bn2 *before* the residual add, a
1x1 projection conv *with* bias on downsampling blocks, no padding in the first conv,
AvgPool2d(4) at the end, and the input cast to float in forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ablations.config import MODELS, check_model
from ablations.errors import UserError
from ablations.models.input_probe import check_input_size
from ablations.models.zoo import build_named


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, same_shape: bool = True) -> None:
        super().__init__()
        self.same_shape = same_shape
        stride = 1 if same_shape else 2
        self.conv1 = conv3x3(in_channels, out_channels, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if not same_shape:
            self.conv3 = nn.Conv2d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        if not self.same_shape:
            x = self.conv3(x)
        return torch.relu(x + out)


class NotebookResNet(nn.Module):
    """The notebook's `resnet(in_channel, num_classes)`; `adaptive` swaps AvgPool2d(4) for a
    global average so the same network runs on 28/32 px inputs."""

    # Spatial size into the final pool: (S - 2) // 2 after conv1 + maxpool, then halved
    # (rounding up) by three stride-2 blocks. AvgPool2d(4) must turn it into exactly 1x1 for
    # Linear(256), so it has to be 4..7 px: S in 52..115 (the notebook uses 96).
    INPUT_SIZE_RANGE = {False: (52, 115), True: (4, 10_000)}

    def __init__(self, in_channels: int, num_classes: int, *, adaptive: bool = False) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.block1 = nn.Conv2d(in_channels, 32, 3, 1)
        self.block2 = nn.Sequential(nn.MaxPool2d(2, 2), ResidualBlock(32, 32), ResidualBlock(32, 32))
        self.block3 = nn.Sequential(ResidualBlock(32, 64, False), ResidualBlock(64, 64))
        self.block4 = nn.Sequential(ResidualBlock(64, 128, False), ResidualBlock(128, 128))
        pool = nn.AdaptiveAvgPool2d(1) if adaptive else nn.AvgPool2d(4)
        self.block5 = nn.Sequential(ResidualBlock(128, 256, False), ResidualBlock(256, 256), pool)
        self.classifier = nn.Linear(256, num_classes)

    @property
    def input_size_range(self) -> tuple[int, int]:
        return self.INPUT_SIZE_RANGE[self.adaptive]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # as the notebook; a no-op for float32 input
        x = self.block1(x)
        x = self.block2(x)
        x = self.block3(x)
        x = self.block4(x)
        x = self.block5(x)
        x = x.view(x.shape[0], -1)
        return self.classifier(x)


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build a model by name (a built-in one, or torchvision:NAME / timm:NAME); an input size it cannot
    take is an error that says which size to set."""
    check_model(name)
    if name not in MODELS:
        model = build_named(name, in_channels=in_channels, num_classes=num_classes)
        check_input_size(model, name, in_channels=in_channels, num_classes=num_classes, size=image_size)
        return model
    model = NotebookResNet(in_channels, num_classes, adaptive=(name == "notebook_resnet_adaptive"))
    low, high = model.input_size_range
    if image_size < low:
        hint = "; or use --model notebook_resnet_adaptive at native 28/32 px" if not model.adaptive else ""
        raise UserError(f"{name} needs inputs of at least {low} px, got {image_size} px; set --image-size 96{hint}")
    if image_size > high:
        raise UserError(f"{name} takes inputs of at most {high} px, got {image_size} px; set --image-size 96")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
