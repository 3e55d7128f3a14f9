"""train(cfg) -> RunResult: the one trainer every run of every grid goes through.

Device-agnostic: the dataset sits on the device as uint8, batches are index gathers,
augmentation is batched tensor math, metrics accumulate on the device and are read once per
epoch (no host sync per step). Evaluation runs off the training clock under inference_mode.
Switched-off features are no-ops (nullcontext instead of autocast), so the loop has no branches.
"""

from __future__ import annotations

import math
import random
import resource
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ablations.augment import Policy, build_policy
from ablations.config import TrainConfig
from ablations.data import TensorDataset, load_dataset
from ablations.errors import UserError
from ablations.models import build_model
from ablations.provenance import device_name, resolve_device
from ablations.schedules import schedule_for


@dataclass
class RunResult:
    status: str  # done | diverged
    epochs: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    train_images_per_s: float = 0.0
    diverged_epoch: int | None = None
    peak_memory_bytes: int | None = None
    device_name: str = ""
    error: str | None = None

    def _last(self, key: str) -> float | None:
        values = [e[key] for e in self.epochs if e.get(key) is not None]
        return values[-1] if values else None

    @property
    def final_test_acc(self) -> float | None:
        return self._last("test_acc")

    @property
    def final_train_acc(self) -> float | None:
        return self._last("train_acc")

    @property
    def best_test_acc(self) -> float | None:
        values = [e["test_acc"] for e in self.epochs if e.get("test_acc") is not None]
        return max(values) if values else None

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(
            final_test_acc=self.final_test_acc,
            final_train_acc=self.final_train_acc,
            best_test_acc=self.best_test_acc,
            final_test_loss=self._last("test_loss"),
            final_train_loss=self._last("train_loss"),
        )
        return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # every device's default generator too
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


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


def autocast_for(cfg: TrainConfig, device: torch.device):
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, SGD step on one batch; returns the detached loss and logits (no sync)."""
    with autocast:
        logits = model(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    data: TensorDataset,
    policy: Policy,
    *,
    batch_size: int,
    lr_at: Callable[[int], float],
    first_step: int,
    generator: torch.Generator,
    autocast,
    memory_format: torch.memory_format,
) -> dict:
    model.train()
    steps = len(data.train_labels) // batch_size
    n = steps * batch_size
    order = torch.randperm(len(data.train_labels), generator=generator, device=data.device)
    loss_sum = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    start = time.perf_counter()
    for i in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(first_step + i)
        idx = order[i * batch_size : (i + 1) * batch_size]
        x = policy(data.train_images[idx], generator).contiguous(memory_format=memory_format)
        y = data.train_labels[idx]
        loss, logits = train_step(model, optimizer, loss_fn, x, y, autocast)
        loss_sum += loss.float() * len(y)
        correct += (logits.argmax(1) == y).sum()
    total_loss, total_correct = torch.stack([loss_sum, correct.float()]).tolist()  # the epoch's one sync
    seconds = time.perf_counter() - start
    return {
        "lr": lr_at(first_step),
        "train_loss": total_loss / n,
        "train_acc": total_correct / n,
        "seconds": seconds,
        "images_per_s": n / seconds,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module, loss_fn: nn.Module, data: TensorDataset, policy: Policy, *, batch_size: int, autocast,
    memory_format: torch.memory_format,
) -> dict:
    model.eval()
    n = len(data.test_labels)
    loss_sum = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    for begin in range(0, n, batch_size):
        x = policy.eval_transform(data.test_images[begin : begin + batch_size]).contiguous(memory_format=memory_format)
        y = data.test_labels[begin : begin + batch_size]
        with autocast:
            logits = model(x)
        loss_sum += loss_fn(logits.float(), y) * len(y)
        correct += (logits.argmax(1) == y).sum()
    total_loss, total_correct = torch.stack([loss_sum, correct.float()]).tolist()
    return {"test_loss": total_loss / n, "test_acc": total_correct / n}


def train(
    cfg: TrainConfig,
    data: TensorDataset | None = None,
    *,
    on_epoch: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train one run. A non-finite loss ends it with status 'diverged' instead of raising."""
    wall_start = time.perf_counter()
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(cfg.seed)
    if data is None:
        data = load_dataset(
            cfg.dataset, data_root=cfg.data_root, train_subset=cfg.train_subset, test_subset=cfg.test_subset,
            device=device,
        )
    data = data.to(device)
    size = cfg.input_size(data.native_size)
    policy = build_policy(cfg.augment, native_size=data.native_size, out_size=size, channels=data.channels)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(cfg.model, in_channels=data.channels, num_classes=data.num_classes, image_size=size)
    model = model.to(device=device, memory_format=memory_format)
    forward = torch.compile(model) if cfg.compile else model
    optimizer = make_optimizer(model, cfg, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    # Full batches only: a ragged last batch of a few images gives BatchNorm noisy statistics
    # (seen: test accuracy swinging 95% -> 52% between epochs on a 5,000-image subset), and
    # fixed shapes suit torch.compile and CUDA graphs. Each epoch still visits a fresh shuffle.
    steps_per_epoch = len(data.train_labels) // cfg.batch_size
    if steps_per_epoch == 0:
        raise UserError(
            f"batch-size {cfg.batch_size} is larger than the training set ({len(data.train_labels)} images); "
            "lower --batch-size or raise --train-subset"
        )
    lr_at = schedule_for(cfg, steps_per_epoch)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    autocast = autocast_for(cfg, device)

    result = RunResult(status="done", device_name=device_name(device))
    train_seconds = 0.0
    for epoch in range(cfg.epochs):
        metrics = {"epoch": epoch + 1}
        metrics.update(
            train_one_epoch(
                forward, optimizer, loss_fn, data, policy, batch_size=cfg.batch_size, lr_at=lr_at,
                first_step=epoch * steps_per_epoch, generator=generator, autocast=autocast,
                memory_format=memory_format,
            )
        )
        train_seconds += metrics["seconds"]
        if not math.isfinite(metrics["train_loss"]):
            metrics.update(test_loss=None, test_acc=None)
            result.epochs.append(metrics)
            result.status, result.diverged_epoch = "diverged", epoch + 1
            if on_epoch:
                on_epoch(metrics)
            break
        metrics.update(
            evaluate(
                forward, loss_fn, data, policy, batch_size=cfg.eval_batch_size, autocast=autocast,
                memory_format=memory_format,
            )
        )
        result.epochs.append(metrics)
        if on_epoch:
            on_epoch(metrics)

    trained_images = steps_per_epoch * cfg.batch_size * len(result.epochs)
    result.train_images_per_s = trained_images / train_seconds if train_seconds else 0.0
    result.peak_memory_bytes = peak_memory_bytes(device)
    result.wall_s = time.perf_counter() - wall_start
    return result


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Linux reports ru_maxrss in KiB: the process's peak resident set, a fair CPU analogue.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
