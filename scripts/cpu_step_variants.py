"""Throughput of execution variants of the trainer's step, interleaved round by round; and the grid's layout.

A shared CPU's speed drifts by 20% or more over tens of seconds, so two variants timed one
after the other can differ by more than the effect being measured. Here every round runs one
call of each variant back to back, and each variant's median over the rounds is compared with
the first variant of its kind (train or eval): drift hits every variant alike.

    python scripts/cpu_step_variants.py                         # 28 px: fp32, bf16, compile-bf16, eval-512, eval-2048
    python scripts/cpu_step_variants.py --size 96 --variants contiguous,fp32,bf16
    python scripts/cpu_step_variants.py --layout                # 2 processes x 1 thread vs 1 process x 2 threads
    python scripts/cpu_step_variants.py --kernels --size 96 --variants bf16   # the step's matrix ops, one by one
    THP_MEM_ALLOC_ENABLE=1 python scripts/cpu_step_variants.py  # process-wide settings: per run

Variants, each a run from `build_run` (the grid's trainer), batch 64, SGD, random uint8 images:
  contiguous    train step, fp32, NCHW (the notebook's execution)
  fp32, bf16    train step, channels_last, fp32 or bf16 autocast
  compile-bf16  train step, channels_last, bf16 autocast, torch.compile
  eval-512, eval-2048   `evaluate` over 2,048 test images in batches of 512 or 2,048 (forward only,
                        the suite's default precision and layout)
The model is the notebook's ResNet at 52 px and above, its adaptive variant below.

--layout runs the bf16 train step at --size in worker processes for --seconds of wall time per
round: 2 processes x 1 thread (the grid's layout: one run per core) and 1 process x 2 threads,
alternating which goes first, and reports each layout's aggregate images/s (median over rounds).

--kernels breaks each train variant's step into its matrix ops (bench.kernel_ceiling) and times
them alone, round by round beside the step and a GEMM: each shape's time and its share of the
GEMM peak, the ops' total against the step's, and the utilization ceiling that total sets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ablations.config import TrainConfig
from ablations.data.dataset import TensorDataset
from ablations.models.notebook import NotebookResNet
from ablations.run.build import Run, build_run
from ablations.run.loop import evaluate, train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not installed: import it from the checkout
from bench.kernel_ceiling import MatrixOp, Replay, record_matrix_ops, step_seconds  # noqa: E402
from bench.peaks import GEMM_SIZE, gemm_peak  # noqa: E402

EVAL_IMAGES = 2048  # one eval call: the largest eval batch, so both eval variants do the same work
VARIANTS = {  # name -> (kind, TrainConfig overrides)
    "contiguous": ("train", {"precision": "fp32", "channels_last": False}),
    "fp32": ("train", {"precision": "fp32"}),
    "bf16": ("train", {"precision": "bf16"}),
    "compile-bf16": ("train", {"precision": "bf16", "compile": True}),
    "eval-512": ("eval", {"eval_batch_size": 512}),
    "eval-2048": ("eval", {"eval_batch_size": 2048}),
}
DEFAULT_VARIANTS = "fp32,bf16,compile-bf16,eval-512,eval-2048"
LAYOUTS = {"2 processes x 1 thread": (2, 1), "1 process x 2 threads": (1, 2)}


def random_data(train: int, test: int) -> TensorDataset:
    """MNIST-shaped random uint8 images: a step's cost does not depend on what the pixels show."""
    g = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        return torch.randint(256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(10, (n,), generator=g)

    return TensorDataset("synthetic", images(train), labels(train), images(test), labels(test), 10)


def make_run(size: int, batch: int, **overrides) -> Run:
    smallest_fixed_size = NotebookResNet.INPUT_SIZE_RANGE[False][0]  # AvgPool2d(4) needs 52 px or more
    model = "notebook_resnet" if size >= smallest_fixed_size else "notebook_resnet_adaptive"
    cfg = TrainConfig(dataset="synthetic", model=model, image_size=size, batch_size=batch, device="cpu", **overrides)
    return build_run(cfg, random_data(batch, EVAL_IMAGES))


def make_call(variant: str, size: int, batch: int) -> tuple[Callable[[], object], int]:
    """(one call of the variant, images it processes)."""
    kind, overrides = VARIANTS[variant]
    run = make_run(size, batch, **overrides)
    if kind == "eval":
        return (lambda: evaluate(run, "test")), EVAL_IMAGES
    x, y = run.batch(torch.arange(batch))
    run.model.train()
    return (lambda: train_step(run, x, y)), batch


def compare_variants(args: argparse.Namespace) -> None:
    variants = args.variants.split(",")
    calls = {v: make_call(v, args.size, args.batch_size) for v in variants}
    for call, _ in calls.values():  # warm-up: oneDNN primitives, compilation
        call(), call()
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant, (call, _) in calls.items():
            start = time.perf_counter()
            call()
            seconds[variant].append(time.perf_counter() - start)

    print(f"{args.size} px, batch {args.batch_size}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    first_of_kind: dict[str, float] = {}
    for variant in variants:
        kind, images = VARIANTS[variant][0], calls[variant][1]
        rate = images / statistics.median(seconds[variant])
        base = first_of_kind.setdefault(kind, rate)
        reference = next(v for v in variants if VARIANTS[v][0] == kind)
        print(f"{variant:14s} {kind:5s} {images:5d} img/call {rate:9.1f} img/s (median)  {rate / base:5.2f}x {reference}")


# Where each convolution op keeps its input and its stride among its positional arguments.
CONV_INPUT_ARG = {"convolution": 0, "convolution_backward": 1}
CONV_STRIDE_ARG = {"convolution": 3, "convolution_backward": 4}


def op_label(op: MatrixOp) -> str:
    """What an op computes, in a person's words: "conv bwd data+weights 128->256 3x3 s2 12px"."""
    name = op.op.__name__.split(".")[0]
    if name not in CONV_INPUT_ARG:
        return f"matmul {' x '.join(str(tuple(a.shape)) for a in op.args if hasattr(a, 'shape'))}"
    image, weight = op.args[CONV_INPUT_ARG[name]], op.args[CONV_INPUT_ARG[name] + 1]
    stride = op.args[CONV_STRIDE_ARG[name]][0]
    out_ch, in_ch, kh, kw = weight.shape
    if name == "convolution":
        what = "conv fwd"
    else:  # the output mask says which gradients were computed: input, weight, bias
        what = "conv bwd " + "+".join(part for part, wanted in zip(("data", "weights"), op.args[-1][:2], strict=True)
                                      if wanted)
    return f"{what} {in_ch}->{out_ch} {kh}x{kw} s{stride} {image.shape[-1]}px"


def op_flops(replay: Replay) -> list[float]:
    from torch.utils.flop_counter import FlopCounterMode

    flops = []
    for op, args, kwargs in replay.calls:
        with FlopCounterMode(display=False) as counter:
            op(*args, **kwargs)
        flops.append(counter.get_total_flops())
    return flops


def time_kernels(step: Callable[[], object], replay: Replay, dtype: torch.dtype, rounds: int, gemm_size: int) -> dict:
    """Per round, side by side: a GEMM peak, one step, one back-to-back pass over the ops, and
    each op alone; the medians over the rounds."""
    cpu = torch.device("cpu")
    peaks, steps, passes, per_op = [], [], [], [[] for _ in replay.calls]
    for _ in range(rounds):
        peaks.append(gemm_peak(cpu, dtype, size=gemm_size))
        steps.append(step_seconds(step, cpu, steps=1))
        passes.append(replay.run())
        for index, times in enumerate(per_op):
            times.append(replay.op_seconds(index, repeats=3))
    return {"peak": statistics.median(peaks), "step": statistics.median(steps), "pass": statistics.median(passes),
            "per_op": [statistics.median(times) for times in per_op]}


def kernel_table(args: argparse.Namespace) -> None:
    for variant in args.variants.split(","):
        kind, overrides = VARIANTS[variant]
        if kind != "train" or overrides.get("compile"):
            continue  # compiled code runs fused and out= kernels an eager recording would not describe
        step, images = make_call(variant, args.size, args.batch_size)
        step()
        ops = record_matrix_ops(step)
        replay = Replay(ops, torch.device("cpu"))
        flops = op_flops(replay)
        dtype = torch.bfloat16 if overrides.get("precision") == "bf16" else torch.float32
        timed = time_kernels(step, replay, dtype, args.rounds, args.gemm_size)
        rows: dict[str, list[float]] = {}  # label -> [calls, seconds, flops]
        for op, seconds, count in zip(ops, timed["per_op"], flops, strict=True):
            row = rows.setdefault(op_label(op), [0, 0.0, 0.0])
            row[0], row[1], row[2] = row[0] + 1, row[1] + seconds, row[2] + count
        peak, step_s, pass_s, total_flops = timed["peak"], timed["step"], timed["pass"], sum(flops)
        print(f"{variant} train step, {args.size} px, batch {args.batch_size}, {torch.get_num_threads()} threads, "
              f"{args.rounds} rounds; {dtype} GEMM peak {peak / 1e12:.2f} TFLOP/s (median of the rounds)")
        print(f"{'matrix op (each alone)':44s} {'calls':>5s} {'ms':>8s} {'TFLOP/s':>8s} {'of peak':>8s}")
        for label, (calls, seconds, count) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
            print(f"{label:44s} {calls:5d} {seconds * 1e3:8.2f} {count / seconds / 1e12:8.3f} {count / seconds / peak:8.1%}")
        print(f"matrix ops alone, back to back {pass_s * 1e3:.1f} ms = {pass_s / step_s:.0%} of the step's "
              f"{step_s * 1e3:.1f} ms; step {total_flops / step_s / peak:.1%} of the GEMM peak, "
              f"its matrix ops alone {total_flops / pass_s / peak:.1%} ({images / step_s:.0f} img/s)\n")


def layout_worker(args: argparse.Namespace) -> None:
    """One process of a layout: warm up, say ready, then one timed stretch per 'go SECONDS' line."""
    torch.set_num_threads(args.threads)
    run = make_run(args.size, args.batch_size, precision="bf16")
    x, y = run.batch(torch.arange(args.batch_size))
    for _ in range(3):
        train_step(run, x, y)
    print("ready", flush=True)
    for line in sys.stdin:
        budget = float(line.split()[1])
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < budget:
            train_step(run, x, y)  # on the CPU each step has finished when it returns
            steps += 1
        print(json.dumps({"images": steps * args.batch_size, "seconds": time.perf_counter() - start}), flush=True)


def compare_layouts(args: argparse.Namespace) -> None:
    workers: dict[str, list[subprocess.Popen]] = {}
    for name, (processes, threads) in LAYOUTS.items():
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # the OpenMP pool matches torch's threads
        command = [sys.executable, __file__, "--worker", "--threads", str(threads), "--size", str(args.size),
                   "--batch-size", str(args.batch_size)]
        workers[name] = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                         for _ in range(processes)]
    for procs in workers.values():  # all warmed up before any timing
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", "a layout worker failed to start"
    rates: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    names = list(LAYOUTS)
    for round_ in range(args.rounds):
        for name in names[round_ % 2:] + names[: round_ % 2]:  # alternate which layout goes first
            for proc in workers[name]:
                proc.stdin.write(f"go {args.seconds}\n")
                proc.stdin.flush()
            results = [json.loads(proc.stdout.readline()) for proc in workers[name]]
            rates[name].append(sum(r["images"] / r["seconds"] for r in results))  # aggregate over processes
    for procs in workers.values():
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=60)

    print(f"bf16 train step, {args.size} px, batch {args.batch_size}, {args.rounds} rounds x {args.seconds} s per layout")
    base = statistics.median(rates[names[0]])
    for name in names:
        median = statistics.median(rates[name])
        spread = f"{min(rates[name]):.1f}-{max(rates[name]):.1f}"
        print(f"{name:24s} {median:8.1f} img/s aggregate (median; range {spread})  {median / base:5.2f}x {names[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28, help="input size in px (default 28, the CPU grids')")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20, help="rounds: one call of each variant, or one stretch "
                        "of each layout (default 20)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--layout", action="store_true", help="compare 2 processes x 1 thread with 1 x 2 instead")
    parser.add_argument("--kernels", action="store_true", help="time each train variant's matrix ops alone instead")
    parser.add_argument("--seconds", type=float, default=10.0, help="--layout: wall time per layout per round")
    # 2048: the benchmarks' peak. Smaller is a quick check: a 2048^3 bf16 GEMM takes seconds where bf16 is emulated
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE["cpu"],
                        help=f"--kernels: side of the square GEMM that measures the peak (default {GEMM_SIZE['cpu']})")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if args.worker:
        layout_worker(args)
    elif args.layout:
        compare_layouts(args)
    elif args.kernels:
        kernel_table(args)
    else:
        compare_variants(args)


if __name__ == "__main__":
    main()
