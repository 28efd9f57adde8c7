"""Lump textures: exact chord-restricted line integrals, one field for rays, points and
rasters, confinement to their tissue, and the textured anatomy's statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from ctpnp import ScanGeometry, Tomography
from ctpnp.phantoms import Phantom, random_anatomy
from ctpnp.phantoms.shapes import Ellipse, HalfPlane, Rays
from ctpnp.phantoms.texture import (
    HWHM_PER_SIGMA,
    LumpTexture,
    lumpy_texture,
    texture_hu,
    texture_line_integrals,
)

SIGMA_MM = 2.0
HOST = Ellipse("host", 0.0, (HalfPlane.planar(0.0, 25.0),), (5.0, -3.0), (40.0, 25.0), 20.0)
HOLE = Ellipse("hole", 0.0, (), (-5.0, 2.0), (8.0, 5.0), -30.0)


def _one_lump(center_mm: tuple[float, float], amplitude_hu: float = 30.0,
              holes: tuple = (HOLE,)) -> LumpTexture:
    return LumpTexture("lump", HOST, holes, SIGMA_MM, 10.0, (center_mm,), (amplitude_hu,))


def _random_rays(rng: np.random.Generator, n: int, near_mm: tuple[float, float]) -> Rays:
    """Rays through points scattered around ``near_mm``, some tilted out of the plane."""
    points = np.column_stack([rng.normal(near_mm[0], 6.0, n), rng.normal(near_mm[1], 6.0, n),
                              rng.uniform(-20, 20, n)])
    angle = rng.uniform(0, 2 * math.pi, n)
    directions = np.column_stack([np.cos(angle), np.sin(angle), rng.uniform(-0.5, 0.5, n)])
    return Rays.from_arrays(points, directions)


def _lump_along(texture: LumpTexture, point: np.ndarray, direction: np.ndarray, t: float) -> float:
    (cx, cy), a = texture.centers_mm[0], texture.amplitudes_hu[0]
    x, y = point[:2] + t * direction[:2]
    return a * math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * texture.sigma_mm ** 2))


@pytest.mark.parametrize("center_mm", [(-5.0, 9.0), (24.0, 2.0), (-12.0, 2.0)])
def test_a_clipped_lump_integrates_exactly_along_its_chord(center_mm) -> None:
    """Lumps across the host's clipped edge and across the hole's edge: the erf formula
    equals adaptive quadrature of the Gaussian over the ray's pieces in the region."""
    texture = _one_lump(center_mm)
    rays = _random_rays(np.random.default_rng(1), 40, center_mm)
    exact = texture_line_integrals((texture,), rays)
    assert np.count_nonzero(np.abs(exact) > 1.0) >= 20
    for i in range(len(rays)):
        p, d = rays.points_mm[i], rays.directions[i]
        t_in, t_out = HOST.intervals(p[None], d[None])
        h_in, h_out = HOLE.intervals(p[None], d[None])
        pieces = [(t_in[0], t_out[0])] if t_out[0] > t_in[0] else []
        if h_out[0] > h_in[0]:
            assert pieces and t_in[0] < h_in[0] and h_out[0] < t_out[0]   # hole inside host
            pieces = [(t_in[0], h_in[0]), (h_out[0], t_out[0])]
        quadrature = sum(integrate.quad(lambda t, p=p, d=d: _lump_along(texture, p, d, t), a, b,
                                        epsabs=1e-12, epsrel=1e-12, limit=200)[0]
                         for a, b in pieces)
        assert exact[i] == pytest.approx(quadrature, rel=1e-7, abs=1e-7)


def test_line_integrals_agree_with_point_values_along_the_ray() -> None:
    """The integrals are those of the field :func:`texture_hu` evaluates (membership
    tests, not intervals): midpoint sums of point values along each ray match."""
    texture = lumpy_texture(np.random.default_rng(2), "t", HOST, (HOLE,), std_hu=20.0,
                            grain_mm=3.0)
    rays = _random_rays(np.random.default_rng(3), 8, (0.0, 0.0))
    exact = texture_line_integrals((texture,), rays)
    step = 0.001
    t = np.arange(-60, 60, step) + step / 2
    for i in range(len(rays)):
        xyz = rays.points_mm[i] + t[:, None] * rays.directions[i]
        values = texture_hu((texture,), *xyz.T)
        # the field jumps at the region's (at most 4) edges: error up to step x jump each
        assert values.sum() * step == pytest.approx(exact[i], abs=4 * step * np.abs(values).max())
    assert np.abs(exact).max() > 50


def test_texture_stays_in_its_region() -> None:
    center = (-5.0, 9.0)   # a sigma outside the hole, whose inside stays empty
    texture = _one_lump(center, holes=(HOLE,))
    assert HOLE.contains(-5.0, 2.0, 0.0) and not HOLE.contains(*center, 0.0)
    inside_hole = np.array([-5.0, -3.0, -7.0]), np.array([2.0, 3.0, 1.0])
    assert np.all(texture_hu((texture,), *inside_hole, 0.0) == 0.0)
    outside_host = np.array([5.0 + 45.0, 5.0]), np.array([-3.0, 30.0])
    assert np.all(texture_hu((texture,), *outside_host, 0.0) == 0.0)
    assert texture_hu((texture,), np.array([center[0]]), np.array([center[1]]), 0.0)[0] \
        == pytest.approx(30.0)
    # a ray passing a lump just outside the host sees none of it
    outside = LumpTexture("t", HOST, (), SIGMA_MM, 10.0, ((5.0, 30.0),), (50.0,))
    along_edge = Rays.from_arrays(np.array([[0.0, 29.0, 0.0], [0.0, 20.0, 0.0]]),
                                  np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert HOST.chords(along_edge)[0] == 0.0 and HOST.chords(along_edge)[1] > 0
    values = texture_line_integrals((outside,), along_edge)
    assert values[0] == 0.0 and values[1] > 0


def test_rays_along_z_see_no_texture() -> None:
    texture = _one_lump((0.0, 0.0))
    rays = Rays.from_arrays(np.array([[0.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 1.0]]))
    assert texture_line_integrals((texture,), rays)[0] == 0.0


@pytest.fixture(scope="module")
def anatomy() -> Phantom:
    return random_anatomy(4, fov_mm=256.0)


def test_fine_raster_projects_to_the_exact_texture_integrals(anatomy: Phantom) -> None:
    """ASTRA's projection of a raster of the textures alone converges to their exact line
    integrals as the raster is refined (edge discretisation); the mirrored raster does not."""
    textures_only = Phantom("textures", (), "", anatomy.textures)
    geometry = ScanGeometry.parallel((128, 128), 2.0, 60)
    exact = textures_only.project(geometry)
    errors = []
    for shape, pixel_mm in (((512, 512), 0.5), ((1024, 1024), 0.25)):
        fine = geometry.with_image_grid(shape, pixel_mm)
        mu = textures_only.rasterize_mu(fine, supersample=2)   # -1000 HU background: mu 0
        astra = Tomography(fine).forward(torch.from_numpy(mu)[None, None])[0, 0].numpy()
        errors.append(np.linalg.norm(astra - exact) / np.linalg.norm(exact))
    mirrored = Tomography(fine).forward(torch.from_numpy(mu[:, ::-1].copy())[None, None])
    mirrored_error = np.linalg.norm(mirrored[0, 0].numpy() - exact) / np.linalg.norm(exact)
    assert errors[0] < 0.04 and errors[1] < 0.6 * errors[0] and mirrored_error > 0.5


def test_point_value_is_the_flat_phantom_plus_the_clipped_lumps(anatomy: Phantom) -> None:
    flat = random_anatomy(4, fov_mm=256.0, texture=False)
    liver = next(t for t in anatomy.textures if t.name == "liver_texture")
    vessel = liver.holes[0]
    rng = np.random.default_rng(5)
    x0, x1, y0, y1 = liver.host.bounding_box_mm()
    xy = np.column_stack([rng.uniform(x0, x1, 400), rng.uniform(y0, y1, 400)])
    xy = np.vstack([xy[liver.region_contains(*xy.T, 0.0)][:50], [vessel.center_mm]])
    points = np.column_stack([-xy[:, 1], xy[:, 0], np.zeros(len(xy))])   # image frame
    c, a = np.asarray(liver.centers_mm), np.asarray(liver.amplitudes_hu)
    lumps = np.exp(-((xy[:, None] - c) ** 2).sum(-1) / (2 * liver.sigma_mm ** 2)) @ a
    expected = flat.hu_at(points) + np.where(np.arange(len(xy)) < len(xy) - 1, lumps, 0.0)
    np.testing.assert_allclose(anatomy.hu_at(points), expected, atol=1e-9)
    assert len(xy) > 40 and np.abs(lumps[:-1]).max() > 5.0


def test_texture_option_keeps_the_structures_and_seeds() -> None:
    for seed in range(4):
        textured, flat = random_anatomy(seed), random_anatomy(seed, texture=False)
        assert textured.shapes == flat.shapes and flat.textures == ()
        assert {t.name for t in textured.textures} >= {"body_texture", "soft_tissue_texture",
                                                         "liver_texture",
                                                         "vertebra_cancellous_texture"}
    assert random_anatomy(3) == random_anatomy(3)
    assert random_anatomy(3).textures != random_anatomy(2).textures
    geometry = ScanGeometry.parallel((96, 96), 400.0 / 96, 10)
    np.testing.assert_array_equal(random_anatomy(3).rasterize(geometry),
                                  random_anatomy(3).rasterize(geometry))
    assert np.abs(random_anatomy(3).rasterize(geometry)
                  - random_anatomy(3, texture=False).rasterize(geometry)).max() > 5.0


def test_liver_texture_has_its_configured_amplitude_and_grain() -> None:
    """Raster residual (textured minus flat) inside the liver, away from its edges and
    vessels: zero mean, the texture's std_hu, and an autocorrelation half width of the
    grain the lumps were drawn for."""
    stds, grains, targets = [], [], []
    pixel = 0.5
    geometry = ScanGeometry.parallel((800, 800), pixel, 10)
    axis = (np.arange(800) - 399.5) * pixel
    for seed in (0, 1):
        phantom = random_anatomy(seed)
        liver = next(t for t in phantom.textures if t.name == "liver_texture")
        residual = phantom.rasterize(geometry, supersample=1) \
            - random_anatomy(seed, texture=False).rasterize(geometry, supersample=1)
        x, y = axis[None, :], -axis[:, None]
        core = np.ones(residual.shape, dtype=bool)
        for dx, dy in ((3, 0), (-3, 0), (0, 3), (0, -3)):
            core &= liver.host.contains(x + dx, y + dy, 0.0)
        for vessel in liver.holes:
            core &= ~vessel.near(x, y, 3.0)
        values = residual[core]
        assert values.size > 10000
        assert abs(values.mean()) < 0.3 * liver.std_hu
        stds.append(values.std())
        targets.append(liver.std_hu)
        r = np.where(core, residual - values.mean(), 0.0)
        lags = np.arange(12)
        rho = [np.sum(r[:, :800 - k] * r[:, k:]) / np.sum(core[:, :800 - k] & core[:, k:])
               for k in lags]
        rho = np.asarray(rho) / rho[0]
        k = np.flatnonzero(rho < 0.5)[0]
        grains.append((k - 1 + (rho[k - 1] - 0.5) / (rho[k - 1] - rho[k])) * pixel)
    np.testing.assert_allclose(stds, targets, rtol=0.25)
    assert np.mean(np.array(stds) / targets) == pytest.approx(1.0, abs=0.15)
    assert np.mean(grains) == pytest.approx(liver.sigma_mm * HWHM_PER_SIGMA, rel=0.2)


def test_bad_texture_arguments_raise() -> None:
    with pytest.raises(ValueError, match="grain_mm"):
        lumpy_texture(np.random.default_rng(0), "bad", HOST, (), std_hu=5.0, grain_mm=0.0)


@pytest.mark.parametrize("axes_mm", [(10.0, 2.0), (3.0, 30.0), (6.0, 6.0)])
def test_near_holds_every_point_within_the_margin(axes_mm) -> None:
    """Lumps skip the hole pass when not ``near`` a hole: the test must never miss a point
    within the margin (here up to 5 mm off a thin, rotated ellipse)."""
    ellipse = Ellipse("e", 0.0, (), (3.0, -2.0), axes_mm, 37.0)
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2 * math.pi, 5000)
    a, b = axes_mm
    c, s = math.cos(math.radians(37.0)), math.sin(math.radians(37.0))
    x0, y0 = a * np.cos(t), b * np.sin(t)
    radius, angle = 5.0 * np.sqrt(rng.uniform(0, 0.999, t.size)), rng.uniform(0, 2 * math.pi,
                                                                              t.size)
    x = 3.0 + c * x0 - s * y0 + radius * np.cos(angle)
    y = -2.0 + s * x0 + c * y0 + radius * np.sin(angle)
    assert ellipse.near(x, y, 5.0).all()
    far = np.array([3.0 + max(axes_mm) + 6.0]), np.array([-2.0 - max(axes_mm) - 6.0])
    assert not ellipse.near(*far, 5.0)[0]
