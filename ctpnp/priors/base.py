"""The interface every prior of ctpnp offers."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Prior"]


@runtime_checkable
class Prior(Protocol):
    """A prior on mu images ``(B, 1, H, W)`` float32 in 1/mm.

    ``prox(x, sigma)`` denoises ``x`` for Gaussian noise of std ``sigma`` (1/mm,
    a float or a ``(B,)`` tensor), handling the prior's own intensity
    normalization; ``potential(x)`` -> ``(B,)`` is ``-log p(x)`` up to a constant
    (nats). Learned priors also offer ``log_prior_map(x)`` -> ``(B, 1, H, W)``.
    """

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor: ...

    def potential(self, x: torch.Tensor) -> torch.Tensor: ...
