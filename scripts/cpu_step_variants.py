"""Train-step throughput of a few execution variants, timed in turn, one step each per round.

A shared CPU's speed drifts by 20% or more over tens of seconds, so two variants timed one
after the other can differ by more than the effect being measured. Here every round runs one
step of each variant back to back, and each variant's median over the rounds is compared with
the first one's: drift hits every variant alike.

    python scripts/cpu_step_variants.py                          # 96 px: contiguous, channels_last
    python scripts/cpu_step_variants.py --size 28 --variants contiguous,channels_last,compile
    THP_MEM_ALLOC_ENABLE=1 python scripts/cpu_step_variants.py   # process-wide settings: per run

Variants: contiguous (the notebook's NCHW), channels_last (the suite's default), compile
(channels_last under torch.compile). The model is the notebook's ResNet at 96 px, its
adaptive variant below 52 px; batch 64, SGD, random inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from ablations.models import SeedResNet, build_model
from ablations.trainer import train_step

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last, "compile": torch.channels_last}


def make_step(variant: str, size: int, batch: int) -> Callable[[], object]:
    torch.manual_seed(0)
    layout = LAYOUTS[variant]
    smallest_fixed_size = SeedResNet.INPUT_SIZE_RANGE[False][0]  # AvgPool2d(4) needs 52 px or more
    model_name = "seed_resnet" if size >= smallest_fixed_size else "seed_resnet_adaptive"
    model = build_model(model_name, in_channels=1, num_classes=10, image_size=size).to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    forward = torch.compile(model) if variant == "compile" else model
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=layout)
    y = torch.randint(10, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    return lambda: train_step(forward, optimizer, loss_fn, x, y, nullcontext())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="input size in px (default 96)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20, help="timed steps per variant (default 20)")
    parser.add_argument("--variants", default="contiguous,channels_last", help=f"comma-separated: {', '.join(LAYOUTS)}")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in LAYOUTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(LAYOUTS)}")

    steps = {v: make_step(v, args.size, args.batch_size) for v in variants}
    for step in steps.values():  # warm-up: kernel selection, compilation
        step(), step()
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[variant].append(time.perf_counter() - start)

    print(f"{args.size} px, batch {args.batch_size}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    base = statistics.median(seconds[variants[0]])
    for variant in variants:
        median = statistics.median(seconds[variant])
        print(f"{variant:14s} {args.batch_size / median:7.1f} img/s (median)  {base / median:5.2f}x {variants[0]}")


if __name__ == "__main__":
    main()
