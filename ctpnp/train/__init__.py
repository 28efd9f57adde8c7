"""Training of the learned priors (CPU-friendly, checkpointed, resumable)."""

from ctpnp.train.lpn import LPNTrainConfig, Stage, train_lpn

__all__ = ["LPNTrainConfig", "Stage", "train_lpn"]
