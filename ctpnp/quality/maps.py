"""Per-pixel maps of where a reconstruction disagrees with its prior or with its data.

Four maps of a reconstruction ``x`` ``(B, 1, H, W)`` (μ, 1/mm), all ``(B, 1, H, W)``:

* the **prior residual** (HU): ``|x - D(x)|``, how far a prior's denoiser ``D``
  (at the strength its dose rule gives the scan; the reconstruction's prior or
  another one, the *judge*) moves each pixel. For a
  denoiser that is the prox of a regularizer this is the size of the
  regularizer's gradient (the prior's score, ``sigma^2 grad log p`` by
  Tweedie): small where the image is what the prior expects, large on
  structure it would remove;
* the **prior asymmetry** (HU): ``|D(x) - (D(x^T))^T|``, how differently the
  prior denoises the transposed image. Anatomy the prior knows is denoised
  alike either way; streaks, foreign objects and unfamiliar images are not;

* the **prior map** (nats per pixel, larger = less plausible): the prior's own
  ``log_prior_map`` (:class:`~ctpnp.priors.base.HasLogPriorMap`), e.g. the
  Prox-denoiser's per-pixel terms of ``phi_sigma(D(x)) / sigma^2``;
* the **data-consistency map** (dimensionless, 1 = as expected from the noise):
  the squared residual of every reading in units of its noise variance,
  back-projected, divided by the back-projection of its expected value::

      D_j = sum_i A_ij r_i^2 / v_i  /  sum_i A_ij,     r = A x - y

  If ``x`` were the true image, ``r_i`` would be the noise of reading ``i``,
  ``E[r_i^2 / v_i] = 1`` for every reading, and so ``E[D_j] = 1`` at every
  pixel ``j`` whatever the geometry and the dose: ``D_j`` is the mean
  chi-square per reading over the rays through pixel ``j``, weighted by their
  intersection lengths. A regularized reconstruction fits part of the noise
  (``D`` a little under 1) and misses structure it cannot represent (``D``
  above 1 along the rays through it, largest where they cross). ``v`` is the
  post-log noise variance: per item (the estimate the solvers use,
  :func:`ctpnp.physics.estimate_noise_variance`) or per reading.

:func:`region_means` averages a map over square regions of :data:`REGION_PX`
pixels, the unit the calibrated indicator (:mod:`ctpnp.quality.indicator`)
works in; :func:`body_regions` says which regions hold the patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ctpnp import physics
from ctpnp.priors.base import HasLogPriorMap

if TYPE_CHECKING:  # the projector (ODL, ASTRA) is not loaded for the annotation alone
    from ctpnp.projector import Tomography

__all__ = ["BODY_HU", "REGION_PX", "QualityMaps", "body_regions", "data_consistency_map",
           "denoiser_maps_hu", "equivariant_spread_hu", "expand_regions", "prior_map",
           "quality_maps", "region_means", "region_rmse_hu"]

REGION_PX = 16
"""Side of the square regions (pixels) the indicator scores: 12.8 mm at 0.8 mm pixels."""
BODY_HU = -500.0
"""Pixels above this (HU) are the patient; a region holding a quarter of them is scored."""
BODY_FRACTION = 0.25


@dataclass(frozen=True)
class QualityMaps:
    """The per-pixel maps of a batch of reconstructions.

    Attributes:
        residual_hu: ``(B, 1, H, W)`` prior residual ``|x - D(x)|`` (HU).
        asymmetry_hu: ``(B, 1, H, W)`` prior asymmetry ``|D(x) - (D(x^T))^T|`` (HU).
        prior_nats: ``(B, 1, H, W)`` prior map (nats per pixel), ``None`` when the
            prior offers no ``log_prior_map``.
        data_consistency: ``(B, 1, H, W)`` mean chi-square per reading through each
            pixel (dimensionless, expected 1).
        noise_variance: ``(B,)`` post-log noise variance the data map used (its
            per-item mean when given per reading); it also picks the dose of the
            calibration.
    """

    residual_hu: torch.Tensor
    asymmetry_hu: torch.Tensor
    prior_nats: torch.Tensor | None
    data_consistency: torch.Tensor
    noise_variance: torch.Tensor


def data_consistency_map(x: torch.Tensor, y: torch.Tensor, op: Tomography,
                         noise_variance: torch.Tensor) -> torch.Tensor:
    """``D = A^T (r^2 / v) / A^T 1`` with ``r = A x - y`` (see the module docstring).

    Args:
        x: ``(B, 1, H, W)`` reconstruction (μ, 1/mm).
        y: ``(B, 1, views, channels)`` post-log data it was reconstructed from.
        op: the forward model ``A``.
        noise_variance: post-log noise variance, ``(B,)`` or per reading
            ``(B, 1, views, channels)`` (dimensionless).

    Returns:
        ``(B, 1, H, W)`` dimensionless, 1 where the data fit as well as the noise
        allows; 0 outside the field of view (no ray).
    """
    variance = torch.as_tensor(noise_variance, dtype=y.dtype, device=y.device)
    if variance.ndim == 1:
        variance = variance.reshape(-1, 1, 1, 1)
    if bool((variance <= 0).any()):
        raise ValueError("noise_variance must be positive")
    chi_square = (op.forward(x) - y).pow(2) / variance
    coverage = op.adjoint(torch.ones_like(y))
    return op.adjoint(chi_square) / coverage.clamp_min(1e-12 * float(coverage.max()))


def denoiser_maps_hu(prior, x: torch.Tensor, sigma_mu_per_mm: float | torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(residual, asymmetry)`` (HU) of ``x`` ``(B, 1, H, W)`` (μ, 1/mm) under the prior's
    ``prox`` at ``sigma_mu_per_mm`` (1/mm, scalar or ``(B,)``): ``|x - D(x)|`` and
    ``|D(x) - (D(x^T))^T|``, both ``(B, 1, H, W)`` (see the module docstring; 2 prior
    calls)."""
    sigma = torch.as_tensor(sigma_mu_per_mm)
    sigma = sigma.to(x.device) if sigma.ndim else float(sigma)
    with torch.no_grad():
        denoised = prior.prox(x, sigma)
        transposed = prior.prox(x.transpose(-2, -1), sigma).transpose(-2, -1)
    return (physics.mu_difference_to_hu((x - denoised).abs()),
            physics.mu_difference_to_hu((denoised - transposed).abs()))


def equivariant_spread_hu(prior, x: torch.Tensor, sigma_mu_per_mm: float | torch.Tensor
                          ) -> torch.Tensor:
    """Per-pixel standard deviation (HU) of the prior's denoisings of ``x`` under the eight
    flips and quarter turns (:class:`~ctpnp.solvers.equivariance.EquivariantDenoiser`):
    ``(B, 1, H, W)``. A prior that knows the image denoises it alike however it is
    turned; a baseline of the quality benchmark (8 prior calls)."""
    # imported here: the ctpnp.solvers package loads the projector (ODL, ASTRA)
    from ctpnp.solvers.equivariance import EquivariantDenoiser

    with torch.no_grad():
        outputs = EquivariantDenoiser(prior, "average").outputs(x, sigma_mu_per_mm)
    return physics.mu_difference_to_hu(outputs.std(dim=0))


def prior_map(prior, x: torch.Tensor) -> torch.Tensor | None:
    """The prior's ``log_prior_map(x)`` ``(B, 1, H, W)`` (nats per pixel), detached;
    ``None`` for a prior without one."""
    if not isinstance(prior, HasLogPriorMap):
        return None
    return prior.log_prior_map(x).detach()


def quality_maps(x: torch.Tensor, y: torch.Tensor, op: Tomography, prior, judge=None,
                 noise_variance: torch.Tensor | None = None) -> QualityMaps:
    """The maps of reconstructions ``x`` of data ``y`` (shapes as :func:`data_consistency_map`).

    The prior map is ``prior``'s (the reconstruction's); the residual and asymmetry are
    made by ``judge``'s denoiser (default ``prior``; see
    :func:`ctpnp.quality.load_judge`) at the strength its PnP-ADMM dose rule gives ``y``,
    whatever made ``x``, so that they mean the same for every reconstruction of the
    scan. ``noise_variance`` defaults to the estimate from ``y`` the solvers use.
    """
    # imported here: the ctpnp.solvers package loads the projector (ODL, ASTRA)
    from ctpnp.solvers.common import pnp_settings

    judge = prior if judge is None else judge
    if noise_variance is None:
        noise_variance = physics.estimate_noise_variance(y)
    variance = torch.as_tensor(noise_variance, dtype=torch.float64)
    per_item = variance.flatten(1).mean(1) if variance.ndim > 1 else variance
    sigma, _ = pnp_settings(judge, "pnp-admm", y, None, None)
    residual, asymmetry = denoiser_maps_hu(judge, x, sigma)
    return QualityMaps(residual, asymmetry, prior_map(prior, x),
                       data_consistency_map(x, y, op, noise_variance), per_item.cpu())


def region_means(values: torch.Tensor, region_px: int = REGION_PX) -> torch.Tensor:
    """Means over ``region_px``² squares: ``(B, 1, H, W)`` -> ``(B, 1, ceil(H/p), ceil(W/p))``.

    Squares cut by the right or bottom edge average the pixels they hold.
    """
    return F.avg_pool2d(values.double(), region_px, ceil_mode=True)


def region_rmse_hu(hu: torch.Tensor, reference_hu: torch.Tensor, region_px: int = REGION_PX
                   ) -> torch.Tensor:
    """Root-mean-square difference (HU) of ``hu`` and ``reference_hu`` ``(B, 1, H, W)`` per
    region (as :func:`region_means`), float64: the error the indicator is measured against."""
    return region_means((hu.double() - reference_hu.double()).pow(2), region_px).sqrt()


def body_regions(x: torch.Tensor, region_px: int = REGION_PX) -> torch.Tensor:
    """Regions (as :func:`region_means`) of which at least a quarter of the pixels of ``x``
    (μ, 1/mm) is above :data:`BODY_HU`: bool ``(B, 1, h, w)``."""
    inside = (physics.mu_to_hu(x) > BODY_HU).double()
    return region_means(inside, region_px) >= BODY_FRACTION


def expand_regions(regions: torch.Tensor, shape: tuple[int, int],
                   region_px: int = REGION_PX) -> torch.Tensor:
    """A region map ``(B, 1, h, w)`` as pixels ``(B, 1, H, W)``: each region's value on its
    square (for overlays and image files)."""
    full = regions.repeat_interleave(region_px, -2).repeat_interleave(region_px, -1)
    return full[..., :shape[0], :shape[1]]
