"""What ``ctpnp simulate`` does: low-dose DICOM-CT-PD scans of the slices of a CT series.

The scanner is the clinical fan beam of :meth:`ScanGeometry.clinical_fan`
(curved detector, one full turn) scaled to the slice's grid. Each slice is
projected from its image upsampled 2× (bilinear, HU → μ), so a reconstruction
on the slice's own grid never uses the operator that made the data (no
inverse crime). Noise is Poisson with ``photons`` per reading, plus optional
Gaussian electronic noise (:func:`ctpnp.physics.simulate_low_dose`); the
projection is :func:`ctpnp.simulation.clean_projection`.

Output layout: DICOM-CT-PD cannot describe several axial scans in one series,
so ``OUT_DIR/slice_0001/``, ``slice_0002/``, … each hold one axial, one-row scan
at the slice's ``z`` (series order), in the series' patient and study. Parallel
beams are not written: the format's ``TypeofProjectionGeometry`` is a fan beam.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ctpnp import physics
from ctpnp.apps.progress import Progress
from ctpnp.atomic import staged_dir
from ctpnp.io import CTSeries, slice_z_mm, write_projections
from ctpnp.scanner.acquisition import Acquisition
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.simulation import clean_projection

__all__ = ["scan_acquisition", "simulate_series"]


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


def simulate_series(
    series: CTSeries,
    out_dir: Path | str,
    *,
    photons: float,
    n_views: int,
    beam: str = "fan",
    electronic_noise: float = 0.0,
    seed: int | None = None,
    progress: Progress | None = None,
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
        progress: ``progress(slices_done, slices_total, note)`` after each slice.

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
                                          "views", identity=series.datasets[0])
            folders.append(out_dir / name)
            if progress is not None:
                progress(k + 1, len(series.hu), name)
    return folders
