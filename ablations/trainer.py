"""build_run(cfg, data) -> Run, then train(cfg) -> RunResult: the one trainer of every run.

`build_run` is the one place a run is set up (input size -> augmentation policy -> model ->
memory format -> optimizer -> precision -> random streams); the grid's preflight, the
benchmarks, the memory test and the augmentation figure all call it, so they time and check
the very trainer the grid runs.

Device-agnostic: the dataset sits on the device as uint8, batches are index gathers,
augmentation is batched tensor math, metrics accumulate on the device and are read once per
epoch (no host sync per step). Evaluation runs off the training clock under inference_mode.
Switched-off features are no-ops (nullcontext instead of autocast), so the loop has no branches.

Protocol: validation (held out of the train split) is evaluated every epoch and is what any
selection uses; the test set is evaluated once, on the final model. Initialization, data order
and augmentation draw from three streams derived from the seed, so two runs with the same seed
that differ in weight decay or augmentation start from the same weights and see the same batches
(common random numbers: their difference is measured with less noise).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ablations.augment import Policy, build_policy
from ablations.config import Status, TrainConfig, stream_seed
from ablations.data import TensorDataset, load_dataset
from ablations.devices import device_name, peak_memory_bytes, reset_peak_memory, resolve_device, resolve_precision
from ablations.errors import UserError
from ablations.models import build_model, count_parameters
from ablations.schedules import Schedule, schedule_for


@dataclass
class RunResult:
    status: str  # Status.DONE or Status.DIVERGED
    epochs: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    train_images_per_s: float = 0.0
    diverged_epoch: int | None = None
    peak_memory_bytes: int | None = None
    device_name: str = ""
    precision: str = ""  # as resolved on this device: fp32 or bf16
    param_count: int | None = None  # of the model trained
    error: str | None = None

    def _last(self, key: str) -> float | None:
        values = [e[key] for e in self.epochs if e.get(key) is not None]
        return values[-1] if values else None

    @property
    def final_test_acc(self) -> float | None:
        return self._last("test_acc")

    @property
    def final_val_acc(self) -> float | None:
        return self._last("val_acc")

    @property
    def final_train_acc(self) -> float | None:
        return self._last("train_acc")

    @property
    def best_val_epoch(self) -> int | None:
        """The epoch with the highest validation accuracy (the first, on a tie)."""
        scored = [e for e in self.epochs if e.get("val_acc") is not None]
        return max(scored, key=lambda e: (e["val_acc"], -e["epoch"]))["epoch"] if scored else None

    @property
    def best_val_acc(self) -> float | None:
        best = self.best_val_epoch
        return None if best is None else self.epochs[best - 1]["val_acc"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(
            final_test_acc=self.final_test_acc,
            final_val_acc=self.final_val_acc,
            final_train_acc=self.final_train_acc,
            best_val_acc=self.best_val_acc,
            best_val_epoch=self.best_val_epoch,
            final_test_loss=self._last("test_loss"),
            final_val_loss=self._last("val_loss"),
            final_train_loss=self._last("train_loss"),
        )
        return out


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


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, SGD step on one batch; returns the detached loss and logits (no sync)."""
    with run.autocast():
        logits = run.forward(x)
        loss = run.loss_fn(logits, y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(run: Run, epoch: int) -> dict:
    """Epoch `epoch` (0-based) of `run`: a fresh shuffle, full batches, the schedule's rate per step."""
    run.model.train()
    steps, batch_size = run.steps_per_epoch, run.cfg.batch_size
    first_step, n = epoch * steps, steps * batch_size
    rates = [run.lr_at(first_step + i) for i in range(steps)]
    order = torch.randperm(len(run.data.train_labels), generator=run.order, device=run.device)
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.int64)
    start = time.perf_counter()
    for i, lr in enumerate(rates):
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        x, y = run.batch(order[i * batch_size : (i + 1) * batch_size])
        loss, logits = train_step(run, x, y)
        loss_sum += loss.float() * len(y)
        correct += (logits.argmax(1) == y).sum()
    total_loss, total_correct = torch.stack([loss_sum, correct.float()]).tolist()  # the epoch's one sync
    seconds = time.perf_counter() - start
    return {
        # the rate the epoch trained at: its mean over the steps, and the last step's (a decay
        # inside the epoch shows as lr > lr_last)
        "lr": sum(rates) / steps,
        "lr_last": rates[-1],
        "train_loss": total_loss / n,
        "train_acc": total_correct / n,
        "seconds": seconds,
        "images_per_s": n / seconds,
    }


@torch.inference_mode()
def evaluate(run: Run, split: str) -> dict:
    """Loss and accuracy of the model on the 'val' or 'test' split: {f"{split}_loss", f"{split}_acc"}."""
    run.model.eval()
    images, labels = run.data.split(split)
    n, batch_size = len(labels), run.cfg.eval_batch_size
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.int64)
    for begin in range(0, n, batch_size):
        x = run.policy.eval_transform(images[begin : begin + batch_size]).contiguous(memory_format=run.memory_format)
        y = labels[begin : begin + batch_size]
        with run.autocast():
            logits = run.forward(x)
        loss_sum += run.loss_fn(logits.float(), y) * len(y)
        correct += (logits.argmax(1) == y).sum()
    total_loss, total_correct = torch.stack([loss_sum, correct.float()]).tolist()
    return {f"{split}_loss": total_loss / n, f"{split}_acc": total_correct / n}


def train(
    cfg: TrainConfig,
    data: TensorDataset | None = None,
    *,
    on_epoch: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train one run. A non-finite loss ends it with status 'diverged' instead of raising."""
    wall_start = time.perf_counter()
    run = build_run(cfg, data)
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    reset_peak_memory(run.device)  # a one-epoch run's peak includes its warm-up; longer runs reset after epoch 1

    result = RunResult(status=Status.DONE, device_name=device_name(run.device), precision=run.precision,
                       param_count=count_parameters(run.model))
    train_seconds = 0.0
    for epoch in range(cfg.epochs):
        metrics = {"epoch": epoch + 1, **train_one_epoch(run, epoch)}
        train_seconds += metrics["seconds"]
        last = epoch + 1 == cfg.epochs
        if not math.isfinite(metrics["train_loss"]):
            result.status, result.diverged_epoch = Status.DIVERGED, epoch + 1
            last = True
        else:
            metrics.update(evaluate(run, "val"))
            if last:  # the test set scores the final model, once: nothing is chosen on it
                metrics.update(evaluate(run, "test"))
        result.epochs.append(metrics)
        if on_epoch:
            on_epoch(metrics)
        if last:
            break
        if epoch == 0:  # peak memory of the steady state: after cuDNN's benchmark workspaces and compilation
            reset_peak_memory(run.device)

    trained_images = run.steps_per_epoch * cfg.batch_size * len(result.epochs)
    result.train_images_per_s = trained_images / train_seconds if train_seconds else 0.0
    result.peak_memory_bytes = peak_memory_bytes(run.device)
    result.wall_s = time.perf_counter() - wall_start
    return result
