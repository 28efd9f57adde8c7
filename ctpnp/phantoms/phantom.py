"""An analytic phantom: additive shapes with exact line integrals and a raster.

The CT number at a point is ``-1000 HU`` (air) plus the ``hu`` of every shape
containing it; attenuation follows :mod:`ctpnp.physics`,
``mu = mu_water (1 + HU / 1000)``. Because this map is affine and air has
``mu = 0``, the line integral of ``mu`` along a ray is exactly

    ``mu_water / 1000 * sum_k hu_k * chord_k``

with ``chord_k`` the length (mm) of the ray inside shape ``k``. No
discretisation enters, so data simulated this way carry no "inverse crime".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctpnp.phantoms.frame import image_vectors_to_phantom
from ctpnp.phantoms.raster import AIR_HU, rasterize_hu
from ctpnp.phantoms.shapes import Rays, Shape
from ctpnp.phantoms.texture import (
    LumpTexture,
    rasterize_textures,
    texture_hu,
    texture_line_integrals,
)
from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["Phantom"]

_RAYS_PER_BLOCK = 1 << 16
"""Rays handled together: keeps the per-shape temporaries in cache."""


@dataclass(frozen=True)
class Phantom:
    """A phantom made of additive shapes (phantom frame, see :mod:`ctpnp.phantoms.frame`).

    Attributes:
        name: short identifier, e.g. ``"forbild"``.
        shapes: the shapes, in definition order.
        description: free text (source of the parameters, units).
        textures: lump textures added inside their regions (:mod:`ctpnp.phantoms.texture`).
    """

    name: str
    shapes: tuple[Shape, ...]
    description: str = ""
    textures: tuple[LumpTexture, ...] = ()

    def line_integrals(self, starts_mm: np.ndarray, directions: np.ndarray, *,
                       mu_water_per_mm: float = MU_WATER_PER_MM) -> np.ndarray:
        """Exact line integrals of μ along arbitrary straight lines.

        Args:
            starts_mm: ``(..., 3)`` a point on each ray in the image frame
                ``(axis 0, axis 1, z)`` (mm), e.g. the source position.
            directions: ``(..., 3)`` ray directions in the same frame (any
                non-zero length; they are normalised).
            mu_water_per_mm: attenuation of water (1/mm).

        Returns:
            ``(...)`` float64 dimensionless post-log values. Each ray is the
            full line through its point: the phantom lies in front of sources.
        """
        starts = np.asarray(starts_mm, dtype=np.float64)
        dirs = np.asarray(directions, dtype=np.float64)
        if starts.shape != dirs.shape or starts.shape[-1:] != (3,):
            raise ValueError(f"starts_mm {starts.shape} and directions {dirs.shape} must both "
                             "be shaped (..., 3)")
        lead = starts.shape[:-1]
        p = image_vectors_to_phantom(starts.reshape(-1, 3))
        d = image_vectors_to_phantom(dirs.reshape(-1, 3))
        total_hu_mm = np.zeros(p.shape[0])
        for first in range(0, p.shape[0], _RAYS_PER_BLOCK):
            block = slice(first, first + _RAYS_PER_BLOCK)
            rays = Rays.from_arrays(p[block], d[block])
            for shape in self.shapes:
                total_hu_mm[block] += shape.hu * shape.chords(rays)
            total_hu_mm[block] += texture_line_integrals(self.textures, rays)
        return (mu_water_per_mm / -AIR_HU * total_hu_mm).reshape(lead)

    def project(self, geometry: ScanGeometry, *,
                mu_water_per_mm: float = MU_WATER_PER_MM) -> np.ndarray:
        """Exact post-log sinogram of the scan ``geometry``.

        Returns:
            ``(views, channels)`` float32, laid out like one slice of
            ``Tomography(geometry).forward`` (add the batch and channel axes
            with ``torch.from_numpy(p)[None, None]``).
        """
        starts, directions = geometry.rays()
        return self.line_integrals(starts, directions,
                                   mu_water_per_mm=mu_water_per_mm).astype(np.float32)

    def rasterize(self, geometry: ScanGeometry, supersample: int = 4, *,
                  z_mm: float = 0.0) -> np.ndarray:
        """``(H, W)`` float32 CT numbers (HU) on the image grid of ``geometry``.

        ``supersample`` sub-points per pixel and axis anti-alias the edges;
        ``z_mm`` picks the slice of 3D phantoms.
        """
        image = rasterize_hu(self.shapes, geometry, supersample, z_mm)
        if self.textures:
            image += rasterize_textures(self.textures, geometry, supersample, z_mm)
        return image

    def rasterize_mu(self, geometry: ScanGeometry, supersample: int = 4, *, z_mm: float = 0.0,
                     mu_water_per_mm: float = MU_WATER_PER_MM) -> np.ndarray:
        """``(H, W)`` float32 μ (1/mm): :meth:`rasterize` mapped through ``hu_to_mu``."""
        return hu_to_mu(self.rasterize(geometry, supersample, z_mm=z_mm), mu_water_per_mm)

    def hu_at(self, points_mm: np.ndarray) -> np.ndarray:
        """CT numbers (HU) at ``(..., 3)`` points of the image frame (mm) → ``(...)`` float64."""
        points = np.asarray(points_mm, dtype=np.float64)
        flat = image_vectors_to_phantom(points.reshape(-1, 3))
        hu = np.full(flat.shape[0], AIR_HU)
        for shape in self.shapes:
            hu += shape.hu * shape.contains(*flat.T)
        hu += texture_hu(self.textures, *flat.T)
        return hu.reshape(points.shape[:-1])
