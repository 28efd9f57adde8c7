"""Losses for training proximal operators on patches ``(N, 1, p, p)``."""

from __future__ import annotations

import torch

__all__ = ["l1_loss", "proximal_matching_loss"]


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all entries (scalar)."""
    return (pred - target).abs().mean()


def proximal_matching_loss(pred: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Proximal matching loss ``mean_n 1 - exp(-(||pred_n - target_n||_2 / gamma)^2)`` (scalar).

    Norms are over all but the first (batch) axis. As ``gamma -> 0`` its minimiser
    tends to the MAP estimate (the prox of ``-log p``) rather than the posterior mean.
    """
    err = (pred - target).flatten(1).pow(2).sum(1)
    return (1.0 - torch.exp(-err / gamma**2)).mean()
