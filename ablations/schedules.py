"""Learning-rate schedules as pure functions of the optimizer step.

A schedule maps step s in [0, epochs * steps_per_epoch) to the learning rate of that step,
using the closed form of the torch scheduler it stands for (the tests check each match over
whole runs). Being pure, the trainer can set the rate from the step alone, a resumed run needs
no scheduler state, and the report can draw the curves. No torch import here: the report
plots learning-rate curves without it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from ablations.config import check_milestones, check_name
from ablations.errors import UserError

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class _Run:
    """What every schedule builder may read; schedules ignore the settings they do not use."""

    base_lr: float
    steps_per_epoch: int
    epochs: int
    milestones: tuple[float, ...]
    gamma: float | None
    warmup_epochs: float

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def gamma_or(self, default: float) -> float:
        return default if self.gamma is None else self.gamma


def _constant(run: _Run) -> Schedule:
    return lambda s: run.base_lr


def _step(run: _Run) -> Schedule:
    # The notebook drops 0.1 -> 0.01 once, at epoch 15 of 20.
    if len(run.milestones) > 1:
        raise UserError(
            f"schedule 'step' decays once but got milestones {list(run.milestones)}; "
            "use schedule 'multistep' to decay at several milestones"
        )
    return _decay_at(run, run.milestones or (0.75 * run.epochs,))


def _multistep(run: _Run) -> Schedule:
    return _decay_at(run, run.milestones or (0.5 * run.epochs, 0.75 * run.epochs))


def _decay_at(run: _Run, milestones: tuple[float, ...]) -> Schedule:
    """MultiStepLR: x gamma at each milestone (in epochs), counted in optimizer steps."""
    check_milestones(milestones, run.epochs)
    gamma = run.gamma_or(0.1)
    # A milestone after epoch 0 must not decay the very first step, even when it rounds to 0.
    steps = sorted(max(1, round(m * run.steps_per_epoch)) for m in milestones)
    return lambda s: run.base_lr * gamma ** bisect_right(steps, s)


def _cosine(run: _Run) -> Schedule:
    total = run.total_steps
    return lambda s: run.base_lr * (1 + math.cos(math.pi * s / total)) / 2


def _warmup_cosine(run: _Run) -> Schedule:
    """LinearLR(start_factor=1/W, total_iters=W), then CosineAnnealingLR over the rest."""
    total = run.total_steps
    warmup = max(1, round(run.warmup_epochs * run.steps_per_epoch))
    if warmup >= total:
        raise UserError(
            f"warmup of {warmup} steps ({run.warmup_epochs} epochs) must be shorter than the run "
            f"({total} steps = {run.epochs} epochs x {run.steps_per_epoch}); lower warmup-epochs"
        )
    start = 1 / warmup

    def lr(s: int) -> float:
        if s < warmup:
            return run.base_lr * (start + (1 - start) * s / warmup)
        return run.base_lr * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) / 2

    return lr


def _onecycle(run: _Run) -> Schedule:
    """OneCycleLR defaults: cos up from max/25 over 30% of the run, then down to max/25/1e4."""
    total = run.total_steps
    peak = run.base_lr
    initial = peak / 25.0
    final = initial / 1e4
    # Fractional on purpose: torch keeps this phase boundary as a float.
    up_end = float(0.3 * total) - 1

    def lr(s: int) -> float:
        if s <= up_end:
            return _cos_anneal(initial, peak, s / up_end)
        return _cos_anneal(peak, final, (s - up_end) / (total - 1 - up_end))

    return lr


def _cos_anneal(start: float, end: float, pct: float) -> float:
    # Same operation order as torch, so the two agree to the last few bits.
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _exponential(run: _Run) -> Schedule:
    # ExponentialLR stepped once per epoch: constant within an epoch.
    gamma = run.gamma_or(0.9)
    return lambda s: run.base_lr * gamma ** (s // run.steps_per_epoch)


BUILDERS: dict[str, Callable[[_Run], Schedule]] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "cosine": _cosine,
    "warmup_cosine": _warmup_cosine,
    "onecycle": _onecycle,
    "exponential": _exponential,
}
# Cosine tails may round to exactly 0 on very long runs; every other schedule stays above 0.
_MAY_REACH_ZERO = frozenset({"cosine", "warmup_cosine"})


def make_schedule(
    name: str,
    *,
    base_lr: float,
    steps_per_epoch: int,
    epochs: int,
    milestones: tuple[float, ...] = (),
    gamma: float | None = None,
    warmup_epochs: float = 1.0,
) -> Schedule:
    """The learning rate at step s in [0, epochs * steps_per_epoch) for schedule `name`."""
    check_name("schedule", name, tuple(BUILDERS))
    if not (math.isfinite(base_lr) and base_lr > 0):
        raise UserError(f"lr must be a finite number above 0, got {base_lr}")
    if steps_per_epoch < 1 or epochs < 1:
        raise UserError(
            f"a schedule needs at least one step per epoch and one epoch, got "
            f"{steps_per_epoch} steps per epoch and {epochs} epochs (is the train subset smaller than a batch?)"
        )
    if gamma is not None and not (math.isfinite(gamma) and gamma > 0):
        raise UserError(f"gamma must be a finite number above 0, got {gamma}")
    if not (math.isfinite(warmup_epochs) and warmup_epochs >= 0):
        raise UserError(f"warmup-epochs must be a finite number, 0 or more, got {warmup_epochs}")
    run = _Run(base_lr, steps_per_epoch, epochs, tuple(milestones), gamma, warmup_epochs)
    return _checked(BUILDERS[name](run), run.total_steps, name in _MAY_REACH_ZERO)


def _checked(fn: Schedule, total_steps: int, may_reach_zero: bool) -> Schedule:
    def lr(step: int) -> float:
        if not 0 <= step < total_steps:
            raise ValueError(f"step {step} is outside the run's [0, {total_steps})")
        value = fn(step)
        assert math.isfinite(value) and (value > 0 or (may_reach_zero and value == 0)), (step, value)
        return value

    return lr


def schedule_for(cfg, steps_per_epoch: int) -> Schedule:
    """The schedule a TrainConfig (or anything with the same fields) asks for."""
    return make_schedule(
        cfg.schedule,
        base_lr=cfg.lr,
        steps_per_epoch=steps_per_epoch,
        epochs=cfg.epochs,
        milestones=tuple(cfg.milestones),
        gamma=cfg.gamma,
        warmup_epochs=cfg.warmup_epochs,
    )


def lr_curve(fn: Schedule, total_steps: int) -> list[float]:
    """The learning rate of every step of a run, for plots and reports."""
    return [fn(s) for s in range(total_steps)]
