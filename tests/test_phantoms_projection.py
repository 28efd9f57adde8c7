"""Exact phantom projections against ASTRA, helical rays, and FBP HU accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ctpnp import ScanGeometry, Tomography
from ctpnp.phantoms import HelicalScan, Phantom, load
from ctpnp.physics import MU_WATER_PER_MM, mu_to_hu

GEOMETRIES = {
    "parallel": ScanGeometry.parallel((128, 128), 2.0, 90),
    "fan_flat": ScanGeometry.clinical_fan((128, 128), 2.0, 90, detector="flat"),
    "fan_curved": ScanGeometry.clinical_fan((128, 128), 2.0, 90, detector="curved"),
}
FINE_GRID = ((512, 512), 0.5)
EDGE_SHIFT_MM = 1.0
"""Rays whose integral changes by over 0.2 % when shifted sideways by this are 'near an edge'."""


def _away_from_edges(phantom: Phantom, geometry: ScanGeometry) -> np.ndarray:
    """``(views, channels)`` mask of rays with a substantial integral that is stable
    under a lateral shift of ``EDGE_SHIFT_MM`` either way."""
    starts, directions = geometry.rays()
    normal = np.stack([-directions[..., 1], directions[..., 0], 0 * directions[..., 2]], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    centre = phantom.line_integrals(starts, directions)
    change = np.maximum(
        np.abs(phantom.line_integrals(starts + EDGE_SHIFT_MM * normal, directions) - centre),
        np.abs(phantom.line_integrals(starts - EDGE_SHIFT_MM * normal, directions) - centre))
    return (centre > 0.1 * centre.max()) & (change < 2e-3 * centre)


def _astra_projection(phantom: Phantom, geometry: ScanGeometry, mirror: bool = False
                      ) -> np.ndarray:
    fine = geometry.with_image_grid(*FINE_GRID)
    mu = phantom.rasterize_mu(fine, supersample=4)
    if mirror:
        mu = mu[:, ::-1].copy()
    return Tomography(fine).forward(torch.from_numpy(mu)[None, None])[0, 0].numpy()


@pytest.mark.parametrize(("phantom_name", "geometry_name"), [
    ("water_inserts", "parallel"), ("water_inserts", "fan_flat"), ("water_inserts", "fan_curved"),
    ("forbild", "parallel"), ("forbild", "fan_flat"),
])
def test_analytic_projection_matches_astra_of_a_fine_raster(phantom_name: str,
                                                           geometry_name: str) -> None:
    phantom, geometry = load(phantom_name), GEOMETRIES[geometry_name]
    exact = phantom.project(geometry)
    assert exact.shape == geometry.sinogram_shape and exact.dtype == np.float32
    astra = _astra_projection(phantom, geometry)
    stable = _away_from_edges(phantom, geometry)
    assert stable.sum() > 1000
    relative = np.abs(astra - exact)[stable] / exact[stable]
    assert relative.max() < 0.01
    assert np.median(relative) < 1e-3
    assert np.linalg.norm(astra - exact) / np.linalg.norm(exact) < 0.02


def test_mirrored_raster_does_not_match() -> None:
    """Left/right consistency of rasterize and project: the mirror image of the
    asymmetric insert phantom projects to something clearly different."""
    phantom, geometry = load("water_inserts"), GEOMETRIES["fan_flat"]
    stable = _away_from_edges(phantom, geometry)
    exact = phantom.project(geometry)
    mirrored = _astra_projection(phantom, geometry, mirror=True)
    assert (np.abs(mirrored - exact)[stable] / exact[stable]).max() > 0.2


def test_fbp_of_exact_data_reproduces_insert_hu() -> None:
    """Stated tolerance: ROI means (6 mm radius, insert radius 12.5 mm) within 2 HU of
    the nominal value, for a 360-view clinical fan on a 256² grid of 1 mm pixels with
    the Hann filter (measured: all within 0.5 HU)."""
    phantom = load("water_inserts")
    geometry = ScanGeometry.clinical_fan((256, 256), 1.0, 360)
    sinogram = torch.from_numpy(phantom.project(geometry))[None, None]
    hu = mu_to_hu(Tomography(geometry).fbp(sinogram, filter="hann"))[0, 0].numpy()
    axis0, axis1 = (np.indices(hu.shape) - (np.array(hu.shape)[:, None, None] - 1) / 2) \
        * geometry.pixel_mm

    def roi_mean(x_mm: float, y_mm: float, radius_mm: float) -> float:
        return float(hu[np.hypot(axis0 + y_mm, axis1 - x_mm) < radius_mm].mean())

    water = roi_mean(0.0, 0.0, 25.0)
    assert abs(water) < 2.0
    inserts = [s for s in phantom.shapes if s.name != "water"]
    assert len(inserts) == 7
    for insert in inserts:
        nominal = insert.hu  # inserts add to water at 0 HU
        measured = roi_mean(*insert.center_mm, 6.0)
        assert abs(measured - nominal) < 2.0, insert.name


def _brute_force_line_integrals(phantom: Phantom, starts: np.ndarray, directions: np.ndarray,
                                half_length_mm: float, step_mm: float) -> np.ndarray:
    """Midpoint rule of μ sampled along each ray around its closest approach to the axis."""
    d = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    closest = starts - np.sum(starts * d, axis=-1, keepdims=True) * d
    t = np.arange(-half_length_mm, half_length_mm, step_mm) + step_mm / 2
    points = closest[..., None, :] + t[:, None] * d[..., None, :]
    return (phantom.hu_at(points) + 1000.0).sum(axis=-1) * step_mm * MU_WATER_PER_MM / 1000.0


@pytest.mark.parametrize("phantom_name", ["shepp_logan_3d", "forbild"])
def test_helical_cone_beam_matches_brute_force_sampling(phantom_name: str) -> None:
    phantom = load(phantom_name)
    scan = HelicalScan(n_views=3, views_per_turn=5, feed_mm_per_turn=40.0, n_channels=12,
                       channel_spacing_mm=40.0, n_rows=3, row_spacing_mm=40.0,
                       z_start_mm=-10.0)
    starts, directions = scan.rays()
    assert starts.shape == directions.shape == (3, 3, 12, 3)
    exact = phantom.line_integrals(starts, directions)
    sampled = _brute_force_line_integrals(phantom, starts, directions, 140.0, 0.04)
    assert exact.max() > 2.0 and (exact > 0.5).mean() > 0.3
    np.testing.assert_allclose(exact, sampled, atol=2e-3 * exact.max())


def test_helical_scan_geometry() -> None:
    scan = HelicalScan(n_views=8, views_per_turn=4, feed_mm_per_turn=24.0, n_channels=5,
                       channel_spacing_mm=10.0, n_rows=3, row_spacing_mm=2.0,
                       angle_start_rad=0.3, z_start_mm=-5.0)
    starts, directions = scan.rays()
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1.0)
    np.testing.assert_allclose(np.hypot(starts[..., 0], starts[..., 1]), 595.0)
    np.testing.assert_allclose(starts[:, 0, 0, 2], -5.0 + 6.0 * np.arange(8))
    # the central channel of the middle row passes through the rotation axis
    central_start, central_dir = starts[:, 1, 2], directions[:, 1, 2]
    along = -np.sum(central_start[:, :2] * central_dir[:, :2], axis=-1)
    np.testing.assert_allclose(central_start[:, :2] + along[:, None] * central_dir[:, :2], 0,
                               atol=1e-9)
    np.testing.assert_allclose(central_dir[:, 2], 0, atol=1e-12)
    # rows spread along z by row_spacing at the detector distance
    rise = directions[:, 2, 2, 2] / np.hypot(directions[:, 2, 2, 0], directions[:, 2, 2, 1])
    np.testing.assert_allclose(rise, 2.0 / 1085.6)


def test_single_row_zero_feed_helical_equals_the_curved_fan_rays() -> None:
    fan = ScanGeometry.clinical_fan((64, 64), 4.0, 36, detector="curved")
    step = 2 * math.pi / fan.n_views
    scan = HelicalScan(n_views=fan.n_views, views_per_turn=fan.n_views, feed_mm_per_turn=0.0,
                       n_channels=fan.n_channels, channel_spacing_mm=fan.channel_spacing_mm,
                       n_rows=1, row_spacing_mm=1.0, angle_start_rad=step / 2)
    helical_starts, helical_dirs = scan.rays()
    fan_starts, fan_dirs = fan.rays()
    np.testing.assert_allclose(helical_starts[:, 0], fan_starts, atol=1e-9)
    np.testing.assert_allclose(helical_dirs[:, 0], fan_dirs, atol=1e-12)


def test_line_integrals_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="starts_mm"):
        load("shepp_logan").line_integrals(np.zeros((4, 3)), np.ones((5, 3)))
