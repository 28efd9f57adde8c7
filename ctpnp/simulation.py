"""Simulated low-dose scans of CT images: finer-grid projection, noise, DICOM-CT-PD output.

The scanner is the clinical fan beam of :meth:`ScanGeometry.clinical_fan`
(curved detector, one full turn) scaled to the slice's grid. Each slice is
projected from its image upsampled 2× (bilinear, HU → μ), so a reconstruction
on the slice's own grid never uses the operator that made the data (no
inverse crime). Noise is Poisson with ``photons`` per reading, plus optional
Gaussian electronic noise (:func:`ctpnp.physics.simulate_low_dose`).

Output layout: DICOM-CT-PD cannot describe several axial scans in one series,
so ``OUT_DIR/slice_0001/``, ``slice_0002/``, … each hold one axial, one-row scan
at the slice's ``z`` (series order). Parallel beams are not written: the
format's ``TypeofProjectionGeometry`` is a fan beam.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctpnp import physics
from ctpnp.acquisition import Acquisition
from ctpnp.geometry import ScanGeometry
from ctpnp.io import CTSeries, write_projections
from ctpnp.io.atomic import staged_dir
from ctpnp.projector import Tomography

__all__ = ["clean_projection", "phantom_scan", "scan_acquisition", "simulate_series", "slice_z_mm"]


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


def scan_acquisition(
    image_shape: tuple[int, int],
    pixel_mm: float,
    n_views: int,
    *,
    z_mm: float = 0.0,
    row_spacing_mm: float = 1.0,
    photons: float | None = None,
) -> Acquisition:
    """The simulated axial scan of one slice: a clinical fan beam, one row, one turn.

    Its :meth:`Acquisition.fan_geometry` on ``(image_shape, pixel_mm)`` is the
    geometry the data are simulated with, and what a reader of the written
    files gets back (values are float32, as DICOM-CT-PD stores them).

    Args:
        image_shape: ``(H, W)`` pixels of the slice; pixel_mm: its pixel size (mm).
        n_views: views over the full turn.
        z_mm: axial position of the slice (mm, image frame = patient superior).
        row_spacing_mm: height of the single detector row at the detector (mm).
        photons: incident photons per reading, recorded in the acquisition.
    """
    clinical = ScanGeometry.clinical_fan(image_shape, pixel_mm, n_views, detector="curved")
    step = 2 * math.pi / n_views
    counts = None if photons is None else np.full((n_views, clinical.n_channels), photons)
    return Acquisition.uniform(
        n_views=n_views, views_per_turn=n_views, n_rows=1, n_channels=clinical.n_channels,
        channel_spacing_mm=clinical.channel_spacing_mm, row_spacing_mm=row_spacing_mm,
        source_isocenter_mm=clinical.source_isocenter_mm,
        source_detector_mm=clinical.source_detector_mm,
        first_view_angle_rad=clinical.angle_start_rad + step / 2, first_z_mm=z_mm,
        mu_water_per_mm=physics.MU_WATER_PER_MM, photons=counts,
    )


def slice_z_mm(series: CTSeries) -> np.ndarray:
    """``(slices,)`` superior position (mm) of each slice's centre, from the series affine."""
    slices, height, width = series.hu.shape
    centres = np.stack([np.arange(slices), np.full(slices, (height - 1) / 2),
                        np.full(slices, (width - 1) / 2), np.ones(slices)])
    return (series.affine @ centres)[2]


def simulate_series(
    series: CTSeries,
    out_dir: Path | str,
    *,
    photons: float,
    n_views: int,
    beam: str = "fan",
    electronic_noise: float = 0.0,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Simulate a low-dose scan of every slice and write it as DICOM-CT-PD.

    Args:
        series: the normal-dose images; square pixels required.
        out_dir: folder to create (must not exist or be empty); written atomically,
            one ``slice_NNNN`` sub-folder per slice.
        photons: incident photons per reading (I0). n_views: views per turn.
        beam: ``"fan"``; ``"parallel"`` is refused (DICOM-CT-PD is fan-beam).
        electronic_noise: readout noise standard deviation (photon counts).
        seed: slice ``k`` uses ``seed + k``; ``None`` draws fresh noise.
        progress: called with the slice index after each slice is simulated.

    Returns:
        The written slice folders, in series order.

    Raises:
        ValueError: a parallel beam, non-square pixels, or bad photons/noise/views.
    """
    if beam != "fan":
        raise ValueError(f"geometry {beam!r} cannot be written: DICOM-CT-PD describes "
                         "fan-beam scans only (use fan)")
    if n_views < 2:
        raise ValueError(f"views={n_views}: need at least 2")
    _, row_mm, column_mm = series.spacing_mm
    if not math.isclose(row_mm, column_mm, rel_tol=1e-4):
        raise ValueError(f"pixels of {row_mm} x {column_mm} mm: square pixels needed")
    image_shape = tuple(series.hu.shape[1:])
    row_spacing_mm = series.slice_thickness_mm or float(series.spacing_mm[0]) or 1.0
    out_dir = Path(out_dir)
    folders = []
    with staged_dir(out_dir) as staging:
        for k, z_mm in enumerate(slice_z_mm(series)):
            acquisition = scan_acquisition(image_shape, row_mm, n_views, z_mm=float(z_mm),
                                           row_spacing_mm=row_spacing_mm, photons=photons)
            geometry = acquisition.fan_geometry(image_shape, row_mm)
            clean = clean_projection(torch.from_numpy(series.hu[k].copy())[None, None],
                                     geometry)
            noisy = physics.simulate_low_dose(
                clean, photons, electronic_noise=electronic_noise,
                seed=None if seed is None else seed + k)
            name = f"slice_{k + 1:04d}"
            write_projections(noisy[0].permute(1, 0, 2).numpy(), acquisition, staging / name,
                              description=f"ctpnp simulated {photons:g} photons, {n_views} "
                                          "views")
            folders.append(out_dir / name)
            if progress is not None:
                progress(k)
    return folders
