"""K notebook ResNets as one module: the fusion behind packed training (`ablations.run.packed_loop`).

A pack trains K runs of one grid that differ only in seed, augmentation, weight decay and learning-rate
schedule. Their networks fuse exactly (as HFTA, MLSys 2021, fuses models across jobs):
- a convolution of C_in -> C_out channels becomes one of K*C_in -> K*C_out with groups=K: group k reads
  only member k's channels, so the members never mix;
- BatchNorm over C channels becomes BatchNorm over K*C: its statistics are per channel, so per member;
- max/average pooling and relu act per channel, and need nothing;
- the classifier Linear(F, N) becomes a batched matmul over the member dimension (`MemberLinear`).

Layout: member k's images are channels [k*C, (k+1)*C) of one (B, K*C, H, W) input (each member sees its own
B images); every packed parameter and buffer, viewed as (K, *its unpacked shape), is the K members' tensors
stacked, so packing a member in and reading it back out are one `stack` and one index (`pack_state`,
`member_state`). The notebook's forward runs unchanged on the fused modules: its flatten gives (B, K*F)
member-major, which the classifier splits into (K, B, F). Output: logits (K, B, N).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# Modules that act per channel (or not on channels at all): the same module works on K*C channels.
PER_CHANNEL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Identity)


class MemberLinear(nn.Module):
    """K Linear(in_features, out_features) layers applied to K inputs: (B, K*in) -> (K, B, out)."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))  # stacked Linear weights
        self.bias = nn.Parameter(torch.empty(members, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_member = x.view(x.shape[0], self.members, self.in_features).transpose(0, 1)  # (K, B, in)
        return torch.baddbmm(self.bias.unsqueeze(1), per_member, self.weight.transpose(1, 2))


def packed(member: nn.Module, members: int) -> nn.Module:
    """A module of the same structure as `member` that trains `members` copies of it side by side.
    Its parameters are uninitialized: `pack_state` fills them from the members' own models."""
    fused = copy.deepcopy(member)
    for name, child in list(fused.named_modules()):
        if name:
            replacement = _fused(child, members)
            if replacement is not None:
                fused.set_submodule(name, replacement)
    return fused


def _fused(module: nn.Module, k: int) -> nn.Module | None:
    """The K-member version of one leaf module; None for containers, which keep their own forward."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise ValueError(f"cannot pack {module}: padding mode {module.padding_mode!r}")
        return nn.Conv2d(k * module.in_channels, k * module.out_channels, module.kernel_size, stride=module.stride,
                         padding=module.padding, dilation=module.dilation, groups=k * module.groups,
                         bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * module.num_features, eps=module.eps, momentum=module.momentum,
                              affine=module.affine, track_running_stats=module.track_running_stats)
    if isinstance(module, nn.Linear):
        return MemberLinear(k, module.in_features, module.out_features)
    if isinstance(module, PER_CHANNEL) or list(module.children()):
        return None
    raise ValueError(f"cannot pack a {type(module).__name__}: only convolutions, BatchNorm, Linear and per-channel "
                     "modules fuse")


def pack_state(fused: nn.Module, members: list[nn.Module]) -> None:
    """Copy each member's parameters and buffers into its slice of `fused` (of `packed(members[0], K)`)."""
    states = [m.state_dict() for m in members]
    with torch.no_grad():
        for name, tensor in fused.state_dict().items():
            if tensor.ndim == 0:  # BatchNorm's num_batches_tracked: one count, the same for every member
                tensor.copy_(states[0][name])
                continue
            tensor.copy_(torch.stack([s[name] for s in states]).view_as(tensor))


def member_state(fused: nn.Module, members: int, k: int, reference: nn.Module) -> dict[str, torch.Tensor]:
    """Member k's parameters and buffers, shaped as `reference` (an unpacked model) holds them."""
    shapes = {name: t.shape for name, t in reference.state_dict().items()}
    return {name: tensor if tensor.ndim == 0 else tensor.view(members, *shapes[name])[k]
            for name, tensor in fused.state_dict().items()}


def member_ndims(member: nn.Module) -> dict[str, int]:
    """Each parameter's rank in the unpacked model, by name: the norm-and-bias exclusion from weight
    decay (`decay_norm_and_bias`) is decided on it, as the unpacked optimizer decides it."""
    return {name: p.ndim for name, p in member.named_parameters()}
