"""The relaxation ``gamma(sigma)`` of a gradient-step denoiser, per noise level.

``D_sigma = Id - gamma grad g_sigma`` is the gradient-step denoiser of ``gamma
g_sigma`` and so an exact prox wherever ``gamma ||Hess g_sigma|| < 1``
(:mod:`ctpnp.priors.prox_denoiser`). The norm grows with ``sigma`` (an
L2-trained network measured 0.94 at 10 HU and 1.45 at 150 HU), and a PnP run
uses one ``sigma``, so the condition is needed at that level only: one
``gamma`` per noise level relaxes each level no more than it needs. The table
holds ``gamma`` at knots ``sigma_k`` and interpolates linearly in ``log
sigma``, constant beyond the end knots; a single knot is a constant ``gamma``.

Model cards store it as ``"relaxation": {"sigma_hu": [...], "gamma": [...]}``
(or a plain number for a constant, as older cards do).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from ctpnp.priors.normalization import HU_PER_UNIT

__all__ = ["Relaxation"]


@dataclass(frozen=True)
class Relaxation:
    """``gamma`` in (0, 1] at increasing noise levels ``sigma_unit`` (normalized std)."""

    sigma_unit: tuple[float, ...]
    gamma: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.sigma_unit) != len(self.gamma) or not self.gamma:
            raise ValueError("relaxation needs as many gamma values as noise levels, at least "
                             f"one; got {len(self.gamma)} and {len(self.sigma_unit)}")
        if not all(0.0 < g <= 1.0 for g in self.gamma):
            raise ValueError(f"relaxation gamma must lie in (0, 1], got {list(self.gamma)}")
        levels = (0.0, *self.sigma_unit)
        if not all(a < b for a, b in itertools.pairwise(levels)):
            raise ValueError("relaxation noise levels must be positive and increasing, got "
                             f"{list(self.sigma_unit)}")

    @classmethod
    def constant(cls, gamma: float = 1.0) -> Relaxation:
        """The same ``gamma`` at every noise level."""
        return cls((1.0,), (float(gamma),))

    @classmethod
    def from_card(cls, value: float | dict) -> Relaxation:
        """From a card's ``"relaxation"``: a number, or ``{"sigma_hu", "gamma"}`` lists."""
        if isinstance(value, dict):
            return cls(tuple(float(s) / HU_PER_UNIT for s in value["sigma_hu"]),
                       tuple(float(g) for g in value["gamma"]))
        return cls.constant(float(value))

    def to_card(self) -> float | dict:
        """The card's ``"relaxation"``: a number when constant, else the table in HU."""
        if len(self.gamma) == 1:
            return self.gamma[0]
        return {"sigma_hu": [s * HU_PER_UNIT for s in self.sigma_unit], "gamma": list(self.gamma)}

    def __call__(self, sigma_unit: torch.Tensor) -> torch.Tensor:
        """``gamma(sigma)`` for noise levels ``(B,)`` (normalized std), same dtype and device."""
        gamma = torch.tensor(self.gamma, dtype=sigma_unit.dtype, device=sigma_unit.device)
        if len(self.gamma) == 1:
            return gamma.expand(sigma_unit.shape)
        knots = torch.tensor([math.log(s) for s in self.sigma_unit], dtype=sigma_unit.dtype,
                             device=sigma_unit.device)
        x = sigma_unit.log().clamp(knots[0], knots[-1])
        right = torch.searchsorted(knots, x.contiguous()).clamp(1, len(knots) - 1)
        t = (x - knots[right - 1]) / (knots[right] - knots[right - 1])
        return torch.lerp(gamma[right - 1], gamma[right], t)

    def scaled_at(self, sigma_unit: tuple[float, ...], factors: tuple[float, ...]) -> Relaxation:
        """A table on the knots ``sigma_unit``: this ``gamma`` there times ``factors``,
        capped at 1 (relaxing a relaxed network multiplies the factors)."""
        here = self(torch.tensor(sigma_unit, dtype=torch.float64))
        return Relaxation(tuple(float(s) for s in sigma_unit),
                          tuple(min(1.0, float(g) * f) for g, f in zip(here, factors,
                                                                      strict=True)))
