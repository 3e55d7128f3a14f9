"""SGD for a packed model (`ablations.run.packed_model`): one step updates K members, each with its own
learning rate, weight decay and norm/bias exclusion, as K separate `torch.optim.SGD`s would.

Every packed tensor's first dimension is member-major (K members, or K blocks of channels), so
`t.unflatten(0, (K, -1))` is a view of it in any memory format, and a (K, 1, ...) tensor broadcasts a
per-member value over it. The update is torch's SGD (dampening 0, decay added to the gradient):
    d = g + wd * w;  buf = momentum * buf + d;  d = d + momentum * buf (nesterov) or buf;  w -= lr * d
with a momentum buffer that starts at zero (torch starts it at the first d: the same numbers).
A frozen member (`alive` False: its loss went non-finite) gets d = 0, whatever its gradient holds
(0 * NaN would still be NaN), so its weights stay as they were.
"""

from __future__ import annotations

import torch
from torch import nn

from ablations.config import TrainConfig


class PackedSGD:
    def __init__(self, model: nn.Module, cfgs: list[TrainConfig], ndims: dict[str, int]) -> None:
        """`ndims`: each parameter's rank in the unpacked model (`member_ndims`), which decides the
        norm/bias exclusion exactly as the unpacked optimizer decides it (rank <= 1: norm or bias)."""
        self.members = len(cfgs)
        self.momentum, self.nesterov = cfgs[0].momentum, cfgs[0].nesterov
        self.params = [p for _, p in model.named_parameters()]
        self.decay = []  # per parameter: (K, 1, ...) weight decay of each member, in the parameter's dtype
        for name, p in model.named_parameters():
            rates = [cfg.weight_decay if cfg.decay_norm_and_bias or ndims[name] > 1 else 0.0 for cfg in cfgs]
            self.decay.append(torch.tensor(rates, device=p.device, dtype=p.dtype).view(self._column(p)))
        self.buffers = [torch.zeros_like(p) for p in self.params] if self.momentum else []

    def _column(self, p: torch.Tensor) -> tuple[int, ...]:
        """The shape that broadcasts one value per member over p viewed as (K, -1, ...)."""
        return (self.members,) + (1,) * p.ndim

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor, alive: torch.Tensor) -> None:
        """lr: (K,) this step's rate per member, in the parameters' dtype (torch's SGD rounds its rate to it too);
        alive: (K,) bool. Both on the device: no sync."""
        for i, p in enumerate(self.params):
            shape = self._column(p)
            w, g = p.unflatten(0, (self.members, -1)), p.grad.unflatten(0, (self.members, -1))
            d = torch.where(alive.view(shape), g.addcmul(w, self.decay[i]), 0.0)
            if self.momentum:
                buf = self.buffers[i].unflatten(0, (self.members, -1))
                buf.mul_(self.momentum).add_(d)
                d = d.add(buf, alpha=self.momentum) if self.nesterov else buf
            w.addcmul_(d, lr.view(shape), value=-1.0)
