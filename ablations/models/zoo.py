"""Classifiers by name from torchvision and timm: `torchvision:resnet18`, `timm:convnext_atto`.

Built without downloaded weights (torchvision weights=None, timm pretrained=False): every run
trains from its own seeded initialization, as the notebook's models do, and nothing needs a network.
The first layer takes the dataset's channels and the head gives its classes. timm does both
itself (in_chans, num_classes); a torchvision builder takes num_classes, and its first convolution,
built for RGB, is replaced by one with the dataset's channels.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

import torch
from torch import nn

from ablations.config import LIST_MODELS, MODELS
from ablations.errors import UserError

TIMM_MISSING = 'timm models need timm, which is not installed here: pip install -e ".[timm]" (or pip install timm)'
# torchvision builders that need settings to fit the suite's loop. Their auxiliary classifiers
# make the training forward return a tuple, where the loss needs logits; init_weights=True is
# what they do anyway without weights, said outright so torchvision does not warn about it.
TORCHVISION_SETTINGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
RGB = 3  # the channels a torchvision classifier's first convolution is built for


def build_named(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    """The model `source:name` with `in_channels` input channels and `num_classes` outputs."""
    source, _, model_name = name.partition(":")
    build = {"torchvision": _torchvision, "timm": _timm}[source]
    return build(model_name.strip(), in_channels=in_channels, num_classes=num_classes)


def _torchvision(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    import torchvision.models

    names = torchvision_names()
    if name not in names:
        raise _unknown("torchvision", name, names)
    settings = TORCHVISION_SETTINGS.get(name, {})
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **settings)
    if in_channels != RGB:
        adapt_first_conv(model, in_channels)
    return model


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Replace the model's first convolution (its input layer) with one taking `in_channels`.

    The new weights are slices of the old ones (channel c takes the old channel c mod 3): the old
    ones were drawn by the model's own initialization, not downloaded, so the new layer keeps the
    model's scheme (exactly for fan-out schemes such as torchvision's ResNets), and the seed still
    decides them."""
    path, conv = next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None or conv.in_channels != RGB:
        found = "no convolution" if conv is None else f"{conv.in_channels} input channels"
        raise UserError(f"cannot adapt this model to {in_channels}-channel images: its first layer has {found}; "
                        "use a dataset with 3 channels or another model")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, [c % RGB for c in range(in_channels)]])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _timm(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    timm = _require_timm()
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())
    return timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=num_classes)


def _require_timm():
    try:
        import timm
    except ImportError:
        raise UserError(TIMM_MISSING) from None
    return timm


def _unknown(source: str, name: str, names: list[str]) -> UserError:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(f'{source}:{n}' for n in close)}" if close else ""
    return UserError(f"unknown {source} model {name!r}{hint}; list them with: {LIST_MODELS} '{source}:*'")


def torchvision_names() -> list[str]:
    """torchvision's image classifiers (its detection, segmentation, video and quantized models take other inputs)."""
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def model_names(pattern: str = "*", *, on_missing: Callable[[str], None] = lambda _: None) -> list[str]:
    """Every model `--model` takes whose name (with or without its source) matches the glob `pattern`:
    the built-in ones, torchvision's and, where timm is installed, timm's. A source that is not
    installed is reported to `on_missing`."""
    names = list(MODELS) + [f"torchvision:{n}" for n in torchvision_names()]
    try:
        names += [f"timm:{n}" for n in _require_timm().list_models()]
    except UserError as err:
        on_missing(str(err))
    return [n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.partition(":")[2], pattern)]
