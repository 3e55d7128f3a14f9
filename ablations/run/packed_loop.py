"""build_pack(cfgs, data) -> Pack, then train_pack(cfgs) -> [RunResult]: K runs of a grid trained as one model.

The runs of a pack differ only in seed, augmentation, weight decay and learning-rate schedule
(`config.PACK_FREE`); everything else, the data included, is shared (`TrainConfig.pack_key`). Each
member is set up by the unpacked loop's own `build_run`, so it starts from the weights its unpacked run
starts from and draws its data order and augmentation from its own streams; the members' models are then
fused (`ablations.run.packed_model`) and trained by one optimizer (`ablations.run.packed_sgd`). The loss
is the sum of the members' mean losses, so each member's gradient is its own. Per step, member k's rate
is its own schedule's, its weight decay its own.

A member whose loss goes non-finite is frozen from that step on (its loss masked, its update zero) and
ends as 'diverged' at that epoch, as its unpacked run would; the others go on, with numbers that do not
depend on it (grouped convolutions never mix members). A member whose epoch callback raises (its runner
lost the run's claim, `ablations.grid.executors`) ends there as 'failed' with that error, as an unpacked
run whose callback raises does, and is frozen the same way. Evaluation is per member, on the same images.
Each member comes back as its own RunResult, in the order of `cfgs`; `ablations.run.execute.run_pack`
adds each one's provenance.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablations.config import PACK_FREE, PACKABLE_MODELS, Status, TrainConfig
from ablations.data.dataset import TensorDataset
from ablations.errors import UserError
from ablations.models.notebook import count_parameters
from ablations.run.build import Run, build_run, compiled
from ablations.run.devices import device_name, peak_memory_bytes, reset_peak_memory
from ablations.run.packed_model import member_ndims, pack_state, packed
from ablations.run.packed_sgd import PackedSGD
from ablations.run.result import RunResult, one_line


@dataclass
class Pack:
    """K runs as one model: each member's own `Run` (config, policy, schedule, random streams) and the fusion."""

    runs: list[Run]
    model: nn.Module  # the fused model on the device: logits (K, B, classes)
    forward: nn.Module  # the model, or its torch.compile wrapper
    optimizer: PackedSGD
    alive: torch.Tensor  # (K,) bool on the device: False from the step a member's loss went non-finite

    @property
    def members(self) -> int:
        return len(self.runs)

    @property
    def lead(self) -> Run:
        """Member 0: what the members share (data, device, precision, memory format, batch size)."""
        return self.runs[0]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """indices (K, B) -> inputs (B, K*C, H, W), member k's augmented images in channels [k*C, (k+1)*C),
        and labels (K, B)."""
        images = [run.policy(run.data.train_images[i], run.augment) for run, i in zip(self.runs, indices, strict=True)]
        x = torch.cat(images, dim=1).contiguous(memory_format=self.lead.memory_format)
        return x, self.lead.data.train_labels[indices]


def build_pack(cfgs: list[TrainConfig], data: TensorDataset | None = None) -> Pack:
    """Set up a pack without training it: each member by `build_run`, then fused."""
    if len({c.pack_key for c in cfgs}) != 1:
        raise ValueError(f"runs of one pack may differ only in {', '.join(PACK_FREE)}")
    if cfgs[0].model not in PACKABLE_MODELS:
        raise UserError(f"model {cfgs[0].model!r} cannot be packed; packs train {', '.join(PACKABLE_MODELS)}")
    lead = build_run(dataclasses.replace(cfgs[0], compile=False), data)
    # the members share the data, on the device once
    runs = [lead, *(build_run(dataclasses.replace(cfg, compile=False), lead.data) for cfg in cfgs[1:])]
    model = packed(lead.model, len(runs))
    pack_state(model, [run.model for run in runs])
    model = model.to(device=lead.device, memory_format=lead.memory_format)
    return Pack(
        runs=runs, model=model, forward=compiled(model, lead.device) if cfgs[0].compile else model,
        optimizer=PackedSGD(model, cfgs, member_ndims(lead.model)),
        alive=torch.ones(len(runs), dtype=torch.bool, device=lead.device),
    )


def member_losses(pack: Pack, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logits (K, B, classes), labels (K, B) -> (K,) each member's mean loss, as its own loss_fn gives it."""
    k, b, classes = logits.shape
    per_image = F.cross_entropy(logits.reshape(k * b, classes), y.reshape(k * b), reduction="none",
                                label_smoothing=pack.lead.cfg.label_smoothing)
    return per_image.view(k, b).mean(1)


def train_step(pack: Pack, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and one SGD step of every member at its rate lr (K,); returns the detached
    per-member losses (K,) and logits (K, B, classes). No host sync: divergence is found on the device."""
    with pack.lead.autocast():
        logits = pack.forward(x)
        losses = member_losses(pack, logits, y)
    pack.alive &= torch.isfinite(losses)
    pack.optimizer.zero_grad()
    torch.where(pack.alive, losses, 0.0).sum().backward()
    pack.optimizer.step(lr, pack.alive)
    return losses.detach(), logits.detach()


def train_one_epoch(pack: Pack, epoch: int) -> list[dict]:
    """Epoch `epoch` (0-based) of every member: its own shuffle and schedule; one metrics dict per member,
    with the unpacked trainer's keys (images_per_s counts the member's own images)."""
    pack.model.train()
    lead = pack.lead
    steps, batch_size = lead.steps_per_epoch, lead.cfg.batch_size
    first_step, n = epoch * steps, steps * batch_size
    rates = [[run.lr_at(first_step + i) for run in pack.runs] for i in range(steps)]  # (steps, K)
    # one copy to the device per epoch, in the parameters' dtype
    lr = torch.tensor(rates, device=lead.device, dtype=next(pack.model.parameters()).dtype)
    orders = torch.stack([torch.randperm(len(lead.data.train_labels), generator=run.order, device=lead.device)
                          for run in pack.runs])  # (K, N): each member's shuffle from its own stream
    loss_sum = torch.zeros(pack.members, device=lead.device)
    correct = torch.zeros(pack.members, device=lead.device, dtype=torch.int64)
    start = time.perf_counter()
    for i in range(steps):
        x, y = pack.batch(orders[:, i * batch_size : (i + 1) * batch_size])
        losses, logits = train_step(pack, x, y, lr[i])
        loss_sum += losses.float() * batch_size
        correct += (logits.argmax(-1) == y).sum(1)
    totals = torch.stack([loss_sum, correct.float()]).tolist()  # the epoch's one sync
    seconds = time.perf_counter() - start
    return [{"lr": sum(r[k] for r in rates) / steps, "lr_last": rates[-1][k], "train_loss": totals[0][k] / n,
             "train_acc": totals[1][k] / n, "seconds": seconds, "images_per_s": n / seconds}
            for k in range(pack.members)]


@torch.inference_mode()
def evaluate(pack: Pack, split: str) -> list[dict]:
    """Each member's loss and accuracy on 'val' or 'test': [{f"{split}_loss", f"{split}_acc"}] in member order."""
    pack.model.eval()
    lead = pack.lead
    images, labels = lead.data.split(split)
    n, batch_size, k = len(labels), lead.cfg.eval_batch_size, pack.members
    loss_sum = torch.zeros(k, device=lead.device)
    correct = torch.zeros(k, device=lead.device, dtype=torch.int64)
    for begin in range(0, n, batch_size):
        # every member scores the same images; the eval transform depends only on the shared input size
        x = lead.policy.eval_transform(images[begin : begin + batch_size])
        x = x.repeat(1, k, 1, 1).contiguous(memory_format=lead.memory_format)
        y = labels[begin : begin + batch_size].expand(k, -1)
        with lead.autocast():
            logits = pack.forward(x)
        loss_sum += member_losses(pack, logits.float(), y) * y.shape[1]
        correct += (logits.argmax(-1) == y).sum(1)
    totals = torch.stack([loss_sum, correct.float()]).tolist()
    return [{f"{split}_loss": totals[0][m] / n, f"{split}_acc": totals[1][m] / n} for m in range(k)]


def train_pack(
    cfgs: list[TrainConfig],
    data: TensorDataset | None = None,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> list[RunResult]:
    """Train a pack; `on_epoch(k, metrics)` gets member k's epochs as they end. A member that diverges
    stops there (status 'diverged'), one whose `on_epoch` raises too (status 'failed', with the error);
    the pack goes on while any member trains."""
    wall_start = time.perf_counter()
    pack = build_pack(cfgs, data)
    lead = pack.lead
    if lead.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    reset_peak_memory(lead.device)
    results = [RunResult(status=Status.DONE, device_name=device_name(lead.device), precision=lead.precision,
                         param_count=count_parameters(run.model)) for run in pack.runs]
    training = list(range(pack.members))  # members still training
    train_seconds = [0.0] * pack.members
    for epoch in range(lead.cfg.epochs):
        metrics = train_one_epoch(pack, epoch)
        last = epoch + 1 == lead.cfg.epochs
        going_on = [k for k in training if math.isfinite(metrics[k]["train_loss"])]
        val = evaluate(pack, "val") if going_on else []
        test = evaluate(pack, "test") if going_on and last else []  # the final models, once
        for k in training:
            train_seconds[k] += metrics[k]["seconds"]
            row = {"epoch": epoch + 1, **metrics[k]}
            if k in going_on:
                row.update(val[k], **(test[k] if test else {}))
            else:
                results[k].status, results[k].diverged_epoch = Status.DIVERGED, epoch + 1
            results[k].epochs.append(row)
            if on_epoch:
                try:
                    on_epoch(k, row)
                except Exception as err:  # this member alone ends, as run_one ends a run whose callback raises
                    results[k] = RunResult(status=Status.FAILED, error=one_line(err))
                    pack.alive[k] = False
                    going_on = [m for m in going_on if m != k]
            if last or k not in going_on:
                results[k].wall_s = time.perf_counter() - wall_start
        training = going_on
        if not training:
            break
        if epoch == 0:  # the steady state's peak: after cuDNN's benchmark workspaces and compilation
            reset_peak_memory(lead.device)

    for k, result in enumerate(results):
        if result.status == Status.FAILED:  # stopped: a failed result carries its error alone, as unpacked
            continue
        trained = lead.steps_per_epoch * lead.cfg.batch_size * len(result.epochs)
        result.train_images_per_s = trained / train_seconds[k] if train_seconds[k] else 0.0
        result.peak_memory_bytes = peak_memory_bytes(lead.device)  # the pack's: its members share the device
    return results
