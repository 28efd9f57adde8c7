"""Simulated scans of known images: noiseless data projected on a finer grid, and
noisy scans of analytic phantoms from their exact line integrals (no inverse crime)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ctpnp import physics
from ctpnp.projector import Tomography
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["clean_projection", "phantom_scan"]


def clean_projection(reference_hu: torch.Tensor, geometry: ScanGeometry) -> torch.Tensor:
    """Noiseless line integrals of HU images, projected on a grid twice as fine.

    Args:
        reference_hu: ``(B, 1, H, W)`` HU on ``geometry``'s grid.
        geometry: the scan; its grid is halved in pixel size for the projection.

    Returns:
        ``(B, 1, views, channels)`` post-log data (dimensionless).
    """
    height, width = geometry.image_shape
    fine = geometry.with_image_grid((2 * height, 2 * width), geometry.pixel_mm / 2)
    fine_mu = physics.hu_to_mu(F.interpolate(reference_hu, scale_factor=2, mode="bilinear",
                                             align_corners=False)).clamp_min(0)
    return Tomography(fine).forward(fine_mu)


def phantom_scan(phantom, geometry: ScanGeometry, photons: float, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A low-dose scan of an analytic phantom from its exact line integrals (no inverse crime).

    Args:
        phantom: a :class:`ctpnp.phantoms.Phantom`.
        geometry: the scan and the reference's image grid.
        photons: incident photons per reading (Poisson noise).
        seed: noise seed.

    Returns:
        ``y`` ``(1, 1, views, channels)`` post-log data and the reference
        ``(1, 1, H, W)`` HU (pixel averages), both float32 on the CPU.
    """
    reference_hu = torch.from_numpy(phantom.rasterize(geometry))[None, None]
    clean = torch.from_numpy(phantom.project(geometry))[None, None]
    return physics.simulate_low_dose(clean, photons, seed=seed), reference_hu
