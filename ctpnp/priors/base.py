"""The contract of a prior: ``prox`` required, ``potential`` and ``log_prior_map`` optional.

A prior is anything with ``prox(x, sigma)`` (:class:`Prior`). Priors that are
exact proximal operators of a known regularizer also offer the capabilities
:class:`HasPotential` and :class:`HasLogPriorMap`; code that needs one checks
it explicitly (``isinstance(prior, HasPotential)``), never by calling and
catching an error.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["HasLogPriorMap", "HasPotential", "Prior"]


@runtime_checkable
class Prior(Protocol):
    """A prior on mu images ``(B, 1, H, W)`` float32 in 1/mm.

    ``prox(x, sigma)`` denoises ``x`` for Gaussian noise of std ``sigma`` (1/mm,
    a float or a ``(B,)`` tensor), handling the prior's own intensity
    normalization, and returns a tensor like ``x`` on ``x``'s device.
    """

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasPotential(Protocol):
    """A prior whose regularizer value is known: ``potential(x)`` -> ``(B,)`` is
    ``-log p(x)`` up to a constant (nats), with ``prox = prox_{sigma^2 potential}``."""

    def potential(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasLogPriorMap(Protocol):
    """A prior that locates its verdict: ``log_prior_map(x)`` -> ``(B, 1, H, W)``, nats
    per pixel, larger = less plausible."""

    def log_prior_map(self, x: torch.Tensor) -> torch.Tensor: ...
