"""Each pure schedule must reproduce the torch scheduler it stands for, step by step."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.optim import lr_scheduler as tls

from ablations import schedules
from ablations.config import SCHEDULES, TrainConfig
from ablations.errors import UserError
from ablations.schedules import lr_curve, make_schedule, schedule_for

ROOT = Path(__file__).resolve().parents[1]
BASE_LR = 0.1
# (steps_per_epoch, epochs): the shape the brief names, an odd small one, one step per epoch.
SHAPES = [(7, 20), (3, 5), (1, 4), (938, 3)]


def torch_lrs(build, total_steps: int, step_every: int = 1) -> list[float]:
    """Drive a real SGD with a torch scheduler: the rate used by each optimizer step."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=BASE_LR)
    sched = build(opt)
    lrs = []
    for s in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if (s + 1) % step_every == 0:
            sched.step()
    return lrs


def ours(name: str, spe: int, epochs: int, **kwargs) -> list[float]:
    fn = make_schedule(name, base_lr=BASE_LR, steps_per_epoch=spe, epochs=epochs, **kwargs)
    return lr_curve(fn, spe * epochs)


def close(expected: list[float]):
    # Torch updates most rates recursively; a few ulps of drift are all we allow.
    return pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("spe,epochs", SHAPES)
def test_constant_matches_torch(spe, epochs):
    expected = torch_lrs(lambda o: tls.ConstantLR(o, factor=1.0, total_iters=0), spe * epochs)
    assert ours("constant", spe, epochs) == close(expected)


@pytest.mark.parametrize("spe,epochs", SHAPES)
@pytest.mark.parametrize("milestone,gamma", [(None, None), (1.5, 0.5), (0.2, 0.3)])
def test_step_matches_torch(spe, epochs, milestone, gamma):
    m = 0.75 * epochs if milestone is None else milestone
    expected = torch_lrs(
        lambda o: tls.MultiStepLR(o, milestones=[max(1, round(m * spe))], gamma=0.1 if gamma is None else gamma),
        spe * epochs,
    )
    kwargs = {"milestones": () if milestone is None else (milestone,), "gamma": gamma}
    assert ours("step", spe, epochs, **kwargs) == close(expected)


@pytest.mark.parametrize("spe,epochs", SHAPES)
@pytest.mark.parametrize("milestones,gamma", [((), None), ((1.0, 1.5, 2.75), 0.5)])
def test_multistep_matches_torch(spe, epochs, milestones, gamma):
    ms = milestones or (0.5 * epochs, 0.75 * epochs)
    steps = [max(1, round(m * spe)) for m in ms]
    expected = torch_lrs(
        lambda o: tls.MultiStepLR(o, milestones=steps, gamma=0.1 if gamma is None else gamma),
        spe * epochs,
    )
    assert ours("multistep", spe, epochs, milestones=milestones, gamma=gamma) == close(expected)


@pytest.mark.parametrize("spe,epochs", SHAPES)
def test_cosine_matches_torch(spe, epochs):
    total = spe * epochs
    expected = torch_lrs(lambda o: tls.CosineAnnealingLR(o, T_max=total), total)
    assert ours("cosine", spe, epochs) == close(expected)


@pytest.mark.parametrize("spe,epochs", SHAPES)
@pytest.mark.parametrize("warmup_epochs", [1.0, 0.0, 0.5, 2.5])
def test_warmup_cosine_matches_torch(spe, epochs, warmup_epochs):
    total = spe * epochs
    w = max(1, round(warmup_epochs * spe))
    if w >= total:
        pytest.skip("warmup as long as the run is an error, tested below")

    def build(opt):
        warm = tls.LinearLR(opt, start_factor=1 / w, end_factor=1.0, total_iters=w)
        cos = tls.CosineAnnealingLR(opt, T_max=total - w)
        return tls.SequentialLR(opt, [warm, cos], milestones=[w])

    got = ours("warmup_cosine", spe, epochs, warmup_epochs=warmup_epochs)
    assert got == close(torch_lrs(build, total))
    assert got[0] == pytest.approx(BASE_LR / w)
    assert got[w] == pytest.approx(BASE_LR)


@pytest.mark.parametrize("spe,epochs", SHAPES + [(1, 1), (1, 3), (2, 2), (1, 10)])
def test_onecycle_matches_torch(spe, epochs):
    total = spe * epochs
    expected = torch_lrs(lambda o: tls.OneCycleLR(o, max_lr=BASE_LR, total_steps=total, cycle_momentum=False), total)
    got = ours("onecycle", spe, epochs)
    assert got == close(expected)
    assert max(got) <= BASE_LR * (1 + 1e-12)


@pytest.mark.parametrize("spe,epochs", SHAPES)
@pytest.mark.parametrize("gamma", [None, 0.5])
def test_exponential_matches_torch_stepped_per_epoch(spe, epochs, gamma):
    g = 0.9 if gamma is None else gamma
    expected = torch_lrs(lambda o: tls.ExponentialLR(o, gamma=g), spe * epochs, step_every=spe)
    assert ours("exponential", spe, epochs, gamma=gamma) == close(expected)


def test_notebook_step_decay_drops_to_a_tenth_at_epoch_15():
    spe = 938  # MNIST: 60000 images in batches of 64
    fn = schedule_for(TrainConfig(schedule="step", lr=0.1, epochs=20), spe)
    curve = lr_curve(fn, 20 * spe)
    for epoch in range(20):
        rates = curve[epoch * spe : (epoch + 1) * spe]
        want = 0.1 if epoch < 15 else 0.01
        assert rates == pytest.approx([want] * spe), epoch


def test_defaults():
    kw = {"base_lr": 1.0, "steps_per_epoch": 10, "epochs": 8}
    step = make_schedule("step", **kw)  # one decay at 0.75 * 8 = epoch 6
    assert (step(59), step(60), step(79)) == pytest.approx((1.0, 0.1, 0.1))
    multi = make_schedule("multistep", **kw)  # decays at epochs 4 and 6
    assert [multi(s) for s in (39, 40, 59, 60)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    expo = make_schedule("exponential", **kw)
    assert [expo(s) for s in (0, 9, 10, 35)] == pytest.approx([1.0, 1.0, 0.9, 0.9**3])
    cos = make_schedule("cosine", **kw)
    assert (cos(0), cos(40)) == pytest.approx((1.0, 0.5))
    warm = make_schedule("warmup_cosine", **kw)  # one warmup epoch = 10 steps
    assert [warm(s) for s in (0, 5, 10)] == pytest.approx([0.1, 0.55, 1.0])
    one = make_schedule("onecycle", **kw)
    assert one(0) == pytest.approx(1.0 / 25)
    assert one(79) == pytest.approx(1.0 / 25 / 1e4)
    assert make_schedule("constant", **kw)(79) == 1.0


def test_gamma_applies_to_decaying_schedules():
    kw = {"base_lr": 1.0, "steps_per_epoch": 10, "epochs": 8, "gamma": 0.5}
    assert make_schedule("step", **kw)(79) == pytest.approx(0.5)
    assert make_schedule("multistep", **kw)(79) == pytest.approx(0.25)
    assert make_schedule("exponential", **kw)(79) == pytest.approx(0.5**7)


def test_registry_covers_exactly_the_config_names():
    assert set(schedules.BUILDERS) == set(SCHEDULES)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spe,epochs", [(1, 2), (7, 20), (500, 200)])
def test_rates_are_finite_and_positive(name, spe, epochs):
    curve = ours(name, spe, epochs)
    assert len(curve) == spe * epochs
    assert all(math.isfinite(lr) for lr in curve)
    assert all(lr >= 0 for lr in curve) if "cosine" in name else all(lr > 0 for lr in curve)
    assert max(curve) <= BASE_LR * (1 + 1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_is_a_pure_function_of_the_step(name):
    fn = make_schedule(name, base_lr=0.1, steps_per_epoch=5, epochs=4)
    forward = lr_curve(fn, 20)
    backward = [fn(s) for s in reversed(range(20))][::-1]
    assert forward == backward
    with pytest.raises(ValueError):
        fn(20)
    with pytest.raises(ValueError):
        fn(-1)


def test_schedule_for_reads_every_field():
    cfg = TrainConfig(schedule="multistep", lr=0.2, epochs=10, milestones=(2.0, 4.0), gamma=0.5)
    fn = schedule_for(cfg, 3)
    assert [fn(s) for s in (5, 6, 11, 12, 29)] == pytest.approx([0.2, 0.1, 0.1, 0.05, 0.05])
    warm = schedule_for(TrainConfig(schedule="warmup_cosine", lr=0.2, epochs=10, warmup_epochs=2.0), 3)
    assert warm(0) == pytest.approx(0.2 / 6)


def test_schedule_for_takes_any_object_with_the_config_fields():
    cfg = SimpleNamespace(schedule="exponential", lr=0.5, epochs=3, milestones=[], gamma=0.5, warmup_epochs=1.0)
    assert lr_curve(schedule_for(cfg, 2), 6) == pytest.approx([0.5, 0.5, 0.25, 0.25, 0.125, 0.125])


def test_unknown_name_lists_the_choices():
    with pytest.raises(UserError, match="unknown schedule 'linear'") as err:
        make_schedule("linear", base_lr=0.1, steps_per_epoch=1, epochs=1)
    for name in SCHEDULES:
        assert name in str(err.value)


def test_step_with_several_milestones_points_to_multistep():
    with pytest.raises(UserError, match="multistep"):
        make_schedule("step", base_lr=0.1, steps_per_epoch=10, epochs=20, milestones=(10.0, 15.0))


def test_warmup_as_long_as_the_run_is_refused():
    with pytest.raises(UserError, match="warmup"):
        make_schedule("warmup_cosine", base_lr=0.1, steps_per_epoch=10, epochs=2, warmup_epochs=2.0)
    with pytest.raises(UserError, match="warmup"):
        schedule_for(TrainConfig(schedule="warmup_cosine", epochs=2, warmup_epochs=3.0), 10)
    with pytest.raises(UserError, match="warmup"):  # one step: even the shortest warmup fills it
        make_schedule("warmup_cosine", base_lr=0.1, steps_per_epoch=1, epochs=1, warmup_epochs=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_lr": 0.0},
        {"base_lr": math.inf},
        {"steps_per_epoch": 0},
        {"epochs": 0},
        {"gamma": 0.0},
        {"gamma": math.nan},
        {"warmup_epochs": -1.0},
    ],
)
def test_bad_arguments_are_user_errors(kwargs):
    args = {"base_lr": 0.1, "steps_per_epoch": 10, "epochs": 4, **kwargs}
    with pytest.raises(UserError):
        make_schedule("warmup_cosine" if "warmup_epochs" in kwargs else "exponential", **args)


@pytest.mark.parametrize("milestones", [(0.0,), (4.0,), (-1.0,)])
def test_milestones_outside_the_run_are_refused(milestones):
    with pytest.raises(UserError, match="milestones"):
        make_schedule("multistep", base_lr=0.1, steps_per_epoch=10, epochs=4, milestones=milestones)


def test_a_milestone_that_rounds_to_step_0_still_spares_the_first_step():
    fn = make_schedule("multistep", base_lr=1.0, steps_per_epoch=1, epochs=2, milestones=(0.4,))
    assert (fn(0), fn(1)) == pytest.approx((1.0, 0.1))


def test_unused_settings_are_ignored():
    # A grid may sweep the schedule while keeping one milestones/gamma for all cells.
    plain = lr_curve(make_schedule("cosine", base_lr=0.1, steps_per_epoch=3, epochs=4), 12)
    extra = make_schedule("cosine", base_lr=0.1, steps_per_epoch=3, epochs=4, milestones=(1.0, 2.0), gamma=0.5)
    assert lr_curve(extra, 12) == plain


def test_module_does_not_import_torch():
    code = "import ablations.schedules, sys; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
