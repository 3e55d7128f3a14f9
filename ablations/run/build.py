"""build_run(cfg, data) -> Run: the one place a run is set up.

Input size -> augmentation policy -> model -> memory format -> optimizer -> precision -> random
streams. The grid's preflight, the benchmarks, the memory test and the augmentation figure all call
it, so they time and check the very run the grid trains.

Initialization, data order and augmentation draw from three streams derived from the seed, so two
runs with the same seed that differ in weight decay or augmentation start from the same weights and
see the same batches (common random numbers: their difference is measured with less noise).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ablations.augment.policy import Policy, build_policy
from ablations.config import TrainConfig, stream_seed
from ablations.data.dataset import TensorDataset, load_dataset
from ablations.errors import UserError
from ablations.models.notebook import build_model
from ablations.run.devices import resolve_device, resolve_precision
from ablations.schedules import Schedule, schedule_for


@dataclass
class Run:
    """Everything one run trains with, built once by `build_run`."""

    cfg: TrainConfig
    data: TensorDataset  # on `device`
    device: torch.device
    precision: str  # resolved: fp32 or bf16
    policy: Policy
    model: nn.Module  # on `device`, in `memory_format`
    forward: nn.Module  # the model, or its torch.compile wrapper
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    memory_format: torch.memory_format
    steps_per_epoch: int
    lr_at: Schedule
    order: torch.Generator  # data order stream
    augment: torch.Generator  # augmentation stream

    def autocast(self):
        """bf16 autocast, or a no-op for fp32: the loop itself has no branch."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs (augmented, in the model's memory format) and labels for `indices`."""
        x = self.policy(self.data.train_images[indices], self.augment).contiguous(memory_format=self.memory_format)
        return x, self.data.train_labels[indices]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD as in the notebook; norm and bias parameters skip decay if cfg says so."""
    decay = [p for p in model.parameters() if cfg.decay_norm_and_bias or p.ndim > 1]
    no_decay = [p for p in model.parameters() if not cfg.decay_norm_and_bias and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    # fused SGD is one kernel per step on CUDA; elsewhere the default foreach path.
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fused)


def build_run(cfg: TrainConfig, data: TensorDataset | None = None) -> Run:
    """Set up one run without training it: the grid's preflight is exactly this call."""
    device = resolve_device(cfg.device)
    if data is None:
        data = load_dataset(
            cfg.dataset, data_root=cfg.data_root, train_subset=cfg.train_subset, val_subset=cfg.val_subset,
            test_subset=cfg.test_subset, subset_seed=cfg.train_subset_seed, device=device,
        )
    data = data.to(device)
    # Full batches only: a ragged last batch of a few images gives BatchNorm noisy statistics
    # (seen: test accuracy swinging 95% -> 52% between epochs on a 5,000-image subset), and
    # fixed shapes suit torch.compile and CUDA graphs. Each epoch still visits a fresh shuffle.
    steps_per_epoch = len(data.train_labels) // cfg.batch_size
    if steps_per_epoch == 0:
        raise UserError(
            f"batch-size {cfg.batch_size} is larger than the training set ({len(data.train_labels)} images); "
            "lower --batch-size or raise --train-subset"
        )
    size = cfg.input_size(data.native_size)
    policy = build_policy(cfg.augment, native_size=data.native_size, out_size=size, channels=data.channels)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    # Initial weights come from their own stream, drawn on the CPU (the same weights on every
    # device), without touching the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(cfg.seed, "init"))
        model = build_model(cfg.model, in_channels=data.channels, num_classes=data.num_classes, image_size=size)
    model = model.to(device=device, memory_format=memory_format)
    return Run(
        cfg=cfg, data=data, device=device, precision=resolve_precision(cfg.precision, device.type),
        policy=policy, model=model, forward=compiled(model, device) if cfg.compile else model,
        optimizer=make_optimizer(model, cfg, device),
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), memory_format=memory_format,
        steps_per_epoch=steps_per_epoch, lr_at=schedule_for(cfg, steps_per_epoch),
        order=torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "order")),
        augment=torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "augment")),
    )


def compiled(model: nn.Module, device: torch.device) -> nn.Module:
    """torch.compile'd forward: three graphs (train, eval, the ragged last eval batch), compiled in
    the first epoch and reused after it. On CUDA the graphs are also captured as CUDA graphs
    ("reduce-overhead"): a small ResNet step is hundreds of short kernels, bound by launches."""
    return torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None)
