"""bench.kernel_ceiling: the matrix ops recorded from a real train step are the kernels the step
ran (their dtype under autocast, their memory format, only the gradients it computed), they
carry exactly the FLOPs the benchmarks rate the step by, and alone they take part of the step's time."""

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ablations.models.notebook import build_model
from bench.kernel_ceiling import Replay, TensorSpec, kernel_share, record_matrix_ops
from bench.peaks import flops_per_image

aten = torch.ops.aten
BATCH = 8


@pytest.fixture(scope="module")
def recorded():
    torch.manual_seed(0)
    model = build_model("notebook_resnet_adaptive", in_channels=1, num_classes=10, image_size=28)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()

    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return record_matrix_ops(step), convs, step


def test_every_convolution_is_recorded_forward_and_backward(recorded):
    ops, convs, _ = recorded
    count = {op: sum(o.op is op for o in ops) for op in (aten.convolution.default, aten.convolution_backward.default)}
    assert count == {aten.convolution.default: convs, aten.convolution_backward.default: convs}
    # the classifier: addmm forward, two mm backward (input and weight gradients)
    assert sum(o.op is aten.addmm.default for o in ops) == 1
    assert sum(o.op is aten.mm.default for o in ops) == 2


def test_ops_are_the_kernels_the_step_ran(recorded):
    ops, _, _ = recorded
    image = ops[0].args[0]
    assert image.shape == (BATCH, 1, 28, 28) and image.dtype == torch.bfloat16  # cast by autocast first
    features = next(o for o in ops[1:] if o.op is aten.convolution.default).args[0]
    assert features.shape[1] == 32 and features.make().is_contiguous(memory_format=torch.channels_last)
    last_backward = [o for o in ops if o.op is aten.convolution_backward.default][-1]
    # the first convolution's backward: the image needs no gradient, so none was computed
    assert last_backward.args[-1] == [False, True, True]


def test_recorded_ops_carry_the_steps_counted_flops(recorded):
    ops, _, _ = recorded
    replay = Replay(ops, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        replay.run()
    expected = flops_per_image("notebook_resnet_adaptive", 28, train=True) * BATCH
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-9)


def test_the_share_is_the_kernels_time_over_the_steps(recorded):
    ops, _, step = recorded
    replay = Replay(ops, torch.device("cpu"))
    floor = replay.run()
    assert 0 < floor < 60 and math.isfinite(floor)
    # a step that also waits 1 s outside any matrix op: its kernels are a small share of it
    pause = 1.0

    def slow_step():
        step()
        time.sleep(pause)

    share = kernel_share(slow_step, ops, torch.device("cpu"), rounds=3, steps_per_round=1)
    # floor / (step + pause): one pass over this small step's kernels takes tens of ms
    assert 0 < share < 0.5


def test_expanded_inputs_are_replayed():
    """A broadcast operand (stride 0) is remade with its strides, not written through overlapping views."""
    a, b = torch.randn(4, 1).expand(4, 5), torch.randn(5, 3)
    ops = record_matrix_ops(lambda: torch.mm(a, b))
    assert [o.op for o in ops] == [aten.mm.default] and ops[0].args[0] == TensorSpec.of(a)
    remade = ops[0].args[0].make()
    assert remade.stride() == (1, 0) and torch.equal(remade, remade[:, :1].expand(4, 5))
    assert Replay(ops, torch.device("cpu")).run() > 0


def test_out_overloads_are_recorded():
    a, b, out = torch.randn(3, 4), torch.randn(4, 5), torch.empty(3, 5)
    ops = record_matrix_ops(lambda: torch.mm(a, b, out=out))
    assert [o.op for o in ops] == [aten.mm.out]
    Replay(ops, torch.device("cpu")).run()


@pytest.mark.capability
def test_the_kernel_table_names_each_op_and_the_ceiling():
    script = Path(__file__).resolve().parents[1] / "scripts" / "cpu_step_variants.py"
    # a 256 px GEMM for the peak: the 2048 one takes minutes where bf16 is emulated (AVX2), and the table's
    # form is what is tested here, not the peak
    proc = subprocess.run([sys.executable, str(script), "--kernels", "--size", "28", "--batch-size", "8",
                           "--variants", "bf16,compile-bf16,eval-512", "--rounds", "1", "--gemm-size", "256"],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # one table: eval has no backward to break down, and compiled code runs kernels a recording would not show
    assert out.count("train step, 28 px, batch 8") == 1 and out.startswith("bf16 train step")
    assert "conv fwd 1->32 3x3 s1 28px" in out and "conv bwd weights 1->32 3x3 s1 28px" in out
    assert "conv bwd data+weights 128->256 3x3 s2 4px" in out and "matmul" in out
    totals = re.findall(r"matrix ops alone, back to back [\d.]+ ms = (\d+)% of the step's", out)
    assert len(totals) == 1 and int(totals[0]) > 0  # a measurement: any positive share
