"""train(cfg, data) -> RunResult: the training loop of every run, and its epoch and evaluation steps.

Device-agnostic: the dataset sits on the device as uint8, batches are index gathers,
augmentation is batched tensor math, metrics accumulate on the device and are read once per
epoch (no host sync per step). Evaluation runs off the training clock under inference_mode.
Switched-off features are no-ops (nullcontext instead of autocast), so the loop has no branches.

Protocol: validation (held out of the train split) is evaluated every epoch and is what any
selection uses; the test set is evaluated once, on the final model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from ablations.config import Status, TrainConfig
from ablations.data.dataset import TensorDataset
from ablations.models.notebook import count_parameters
from ablations.run.build import Run, build_run
from ablations.run.checkpoint import Checkpoint
from ablations.run.devices import device_name, peak_memory_bytes, reset_peak_memory
from ablations.run.result import RunResult


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
    checkpoint: Checkpoint | None = None,
) -> RunResult:
    """Train one run. A non-finite loss ends it with status 'diverged' instead of raising. With a
    `checkpoint`, the run resumes from it if it holds this run, saves to it as it trains, and removes
    it at the end; `on_epoch` then gets only the epochs trained in this call."""
    wall_start = time.perf_counter()
    run = build_run(cfg, data)
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    reset_peak_memory(run.device)  # a one-epoch run's peak includes its warm-up; longer runs reset after epoch 1

    result = RunResult(status=Status.DONE, device_name=device_name(run.device), precision=run.precision,
                       param_count=count_parameters(run.model))
    train_seconds = wall_before = 0.0
    resumed = checkpoint.load(run) if checkpoint else None
    if resumed:
        result.epochs, train_seconds, wall_before = resumed.epochs, resumed.train_seconds, resumed.wall_s
        result.resumed_at_epoch, result.checkpoint_commit = len(resumed.epochs) + 1, resumed.commit
    for epoch in range(len(result.epochs), cfg.epochs):
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
        if checkpoint and not last and checkpoint.due():  # before on_epoch, which may stop the run
            checkpoint.save(run, result.epochs, train_seconds, wall_before + time.perf_counter() - wall_start)
        if on_epoch:
            on_epoch(metrics)
        if last:
            break
        if epoch == 0:  # peak memory of the steady state: after cuDNN's benchmark workspaces and compilation
            reset_peak_memory(run.device)

    trained_images = run.steps_per_epoch * cfg.batch_size * len(result.epochs)
    result.train_images_per_s = trained_images / train_seconds if train_seconds else 0.0
    result.peak_memory_bytes = peak_memory_bytes(run.device)
    result.wall_s = wall_before + time.perf_counter() - wall_start
    if checkpoint:
        checkpoint.remove()
    return result
