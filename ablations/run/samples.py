"""figures/augment_samples.png: what each augmentation policy does to real images.

The notebook shows a 3x3 grid of one photo through its transform; here each policy gets a
3x3 grid of one training image drawn through the suite's batched implementation, so the
picture shows the very code that trained the runs. This imports torch, so the grid driver
writes it and the report (which does not import torch) only links it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from ablations.config import TrainConfig  # noqa: E402
from ablations.data.dataset import load_dataset  # noqa: E402
from ablations.run.loop import build_run  # noqa: E402
from ablations.staging import staged  # noqa: E402

SAMPLES = 9  # a 3x3 grid per policy, as the notebook's demo


def write_augment_samples(configs: list[TrainConfig], out: Path, *, seed: int = 0) -> Path | None:
    """One 3x3 panel per augmentation policy used by `configs`; None if there is nothing to show."""
    if not configs:
        return None
    policies = sorted({c.augment for c in configs})
    first = configs[0]
    data = load_dataset(first.dataset, data_root=first.data_root, train_subset=first.batch_size,
                        val_subset=first.val_subset, test_subset=min(first.test_subset or 100, 100))
    # an asymmetric digit (a 2) shows flips and crops; a 1 would hide them
    shown = int((data.test_labels == 2).nonzero()[0, 0]) if bool((data.test_labels == 2).any()) else 0
    image = data.test_images[shown : shown + 1].expand(SAMPLES, -1, -1, -1)
    size = first.input_size(data.native_size)
    fig, axes = plt.subplots(1, len(policies), figsize=(2.6 * len(policies), 2.9), squeeze=False)
    for ax, name in zip(axes[0], policies, strict=True):
        # the run's own setup on the CPU: the very policy and augmentation stream that trained
        run = build_run(dataclasses.replace(first, augment=name, seed=seed, device="cpu", compile=False), data)
        batch = run.policy(image, run.augment) * 0.5 + 0.5  # undo Normalize(0.5, 0.5) for display
        tiles = batch.clamp(0, 1).reshape(3, 3, data.channels, size, size)
        mosaic = tiles.permute(0, 3, 1, 4, 2).reshape(3 * size, 3 * size, data.channels)
        ax.imshow(mosaic.squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"Augmentation policies on one {first.dataset} image ({size} px), 9 draws each", fontsize=10)
    fig.tight_layout()
    relative = Path("figures") / "augment_samples.png"
    try:
        with staged(Path(out)) as stage:  # whole or not at all, as the report that links it
            (stage / relative).parent.mkdir()
            fig.savefig(stage / relative, dpi=110, metadata={"Software": None})
    finally:
        plt.close(fig)
    return Path(out) / relative
