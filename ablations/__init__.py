"""ResNet ablation and benchmark suite: what augmentation, weight decay and learning-rate
decay each do to a ResNet on a small image dataset, with replicates and statistics."""

__version__ = "0.1.0"
