"""Map attenuation images (mu, 1/mm) to the intensity range the learned priors are trained on.

The HU window ``[-1000, 1000]`` HU is mapped linearly onto ``[0, 1]``::

    u = (HU + 1000) / 2000 = mu / (2 mu_water)

so air is 0, water 0.5, and dense bone (> 1000 HU) exceeds 1 (nothing is
clipped). Noise standard deviations scale the same way: ``sigma_unit =
sigma_mu_per_mm / (2 mu_water)``.
"""

from __future__ import annotations

import torch

from ctpnp.physics import MU_WATER_PER_MM

__all__ = [
    "HU_PER_UNIT",
    "MU_WATER_PER_MM",
    "hu_to_unit",
    "mu_to_unit",
    "sigma_mu_to_unit",
    "sigma_unit_to_mu",
    "unit_to_mu",
]

HU_PER_UNIT = 2000.0
"""HU of one normalized-intensity unit; noise stds: ``sigma_unit = sigma_hu / HU_PER_UNIT``."""
_UNIT_SCALE_MU = 2.0 * MU_WATER_PER_MM  # mu (1/mm) of normalized intensity 1 (= +1000 HU)


def mu_to_unit(mu: torch.Tensor) -> torch.Tensor:
    """mu (1/mm) -> normalized intensity (``[0, 1]`` for ``[-1000, 1000]`` HU); any shape."""
    return mu / _UNIT_SCALE_MU


def unit_to_mu(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`mu_to_unit`."""
    return u * _UNIT_SCALE_MU


def hu_to_unit(hu: torch.Tensor) -> torch.Tensor:
    """HU -> normalized intensity; any shape."""
    return (hu + 1000.0) / HU_PER_UNIT


def sigma_mu_to_unit(sigma_mu_per_mm: float | torch.Tensor) -> float | torch.Tensor:
    """Noise std in mu units (1/mm) -> std in normalized intensity."""
    return sigma_mu_per_mm / _UNIT_SCALE_MU


def sigma_unit_to_mu(sigma_unit: float | torch.Tensor) -> float | torch.Tensor:
    """Noise std in normalized intensity -> std in mu units (1/mm)."""
    return sigma_unit * _UNIT_SCALE_MU
