"""Phantom shapes, definitions, frame and rasterisation (no projector needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctpnp import ScanGeometry
from ctpnp.phantoms import available, from_mapping, load
from ctpnp.phantoms.shapes import Ellipse, Ellipsoid, HalfPlane, Polygon, Rays


def _random_rays(rng: np.random.Generator, n: int, spread_mm: float, tilt: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rays through points within ``spread_mm`` of the origin, z-tilt up to ``tilt``."""
    points = rng.uniform(-spread_mm, spread_mm, size=(n, 3))
    angle = rng.uniform(0, 2 * math.pi, n)
    elevation = rng.uniform(-tilt, tilt, n)
    directions = np.stack([np.cos(elevation) * np.cos(angle), np.cos(elevation) * np.sin(angle),
                           np.sin(elevation)], axis=1)
    return points, directions


def _sampled_chords(shape, points: np.ndarray, directions: np.ndarray, half_length_mm: float,
                    step_mm: float) -> np.ndarray:
    """Brute force: count membership samples along each ray (midpoint rule)."""
    t = np.arange(-half_length_mm, half_length_mm, step_mm) + step_mm / 2
    samples = points[:, None, :] + t[None, :, None] * directions[:, None, :]
    inside = shape.contains(samples[..., 0], samples[..., 1], samples[..., 2])
    return inside.sum(axis=1) * step_mm


def test_circle_chords_match_the_closed_form() -> None:
    radius = 30.0
    offsets = np.linspace(-35, 35, 141)
    points = np.stack([np.full_like(offsets, -500.0), offsets, np.zeros_like(offsets)], axis=1)
    directions = np.tile([1.0, 0.0, 0.0], (offsets.size, 1))
    chords = Ellipse("c", 1.0, (), (0.0, 0.0), (radius, radius)).chords(
        Rays.from_arrays(points, directions))
    expected = 2 * np.sqrt(np.clip(radius**2 - offsets**2, 0, None))
    np.testing.assert_allclose(chords, expected, atol=1e-9)


def test_rotated_ellipse_chords_match_its_radon_transform_for_tilted_rays() -> None:
    """Independent formula: a line at signed distance s with unit normal n crosses the
    ellipse over 2ab sqrt(r^2 - (s - n.c)^2) / r^2 in-plane, r^2 = a^2 (n.u)^2 + b^2 (n.v)^2;
    a ray tilted out of the plane travels 1/cos(elevation) times longer."""
    rng = np.random.default_rng(1)
    a, b, angle, centre = 40.0, 15.0, 35.0, np.array([12.0, -7.0])
    points, directions = _random_rays(rng, 2000, 45.0, tilt=1.0)
    chords = Ellipse("e", 1.0, (), tuple(centre), (a, b), angle).chords(
        Rays.from_arrays(points, directions))
    in_plane = np.hypot(directions[:, 0], directions[:, 1])
    normal = np.stack([-directions[:, 1], directions[:, 0]], axis=1) / in_plane[:, None]
    s = np.sum(normal * points[:, :2], axis=1) - normal @ centre
    phi = math.radians(angle)
    r2 = a**2 * (normal @ [math.cos(phi), math.sin(phi)]) ** 2 \
        + b**2 * (normal @ [-math.sin(phi), math.cos(phi)]) ** 2
    expected = 2 * a * b * np.sqrt(np.clip(r2 - s**2, 0, None)) / r2 / in_plane
    np.testing.assert_allclose(chords, expected, atol=1e-8)
    assert (chords > 0).mean() > 0.3


@pytest.mark.parametrize("shape", [
    Ellipse("clipped", 1.0, (HalfPlane.planar(20, 5.0, (3.0, 4.0)),
                             HalfPlane.planar(200, 12.0, (3.0, 4.0))),
            (3.0, 4.0), (25.0, 14.0), -30.0),
    Polygon.from_vertices("pentagon", 1.0, np.array([[0, 0], [30, -5], [35, 20], [10, 30],
                                                       [-8, 15]], dtype=float)),
    Ellipsoid("ellipsoid", 1.0, (), (4.0, -3.0, 6.0), (20.0, 12.0, 9.0), 50.0),
], ids=lambda s: s.name)
def test_chords_agree_with_sampled_membership(shape) -> None:
    """The quadratic/half-space interval solve agrees with point sampling of contains()."""
    rng = np.random.default_rng(2)
    points, directions = _random_rays(rng, 300, 25.0, tilt=0.8)
    step = 0.01
    exact = shape.chords(Rays.from_arrays(points, directions))
    sampled = _sampled_chords(shape, points, directions, 150.0, step)
    np.testing.assert_allclose(exact, sampled, atol=2.5 * step)
    assert (exact > 1.0).mean() > 0.2


def test_polygon_rejects_non_convex_vertices() -> None:
    with pytest.raises(ValueError, match="convex"):
        Polygon.from_vertices("arrow", 1.0, np.array([[0, 0], [10, 0], [2, 2], [0, 10.0]]))


def test_shipped_definitions_load() -> None:
    names = available()
    for required in ("shepp_logan", "forbild", "water_inserts", "resolution"):
        assert required in names
    for name in names:
        phantom = load(name)
        assert phantom.name == name and phantom.shapes and phantom.description


def test_unknown_phantom_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="forbild"):
        load("no_such_phantom")


def _definition(**item) -> dict:
    return {"name": "bad", "shapes": [
        {"name": "body", "type": "circle", "center": [0, 0], "radius": 50, "hu": 1000}, item]}


@pytest.mark.parametrize(("item", "message"), [
    ({"name": "blob", "type": "blob", "center": [0, 0], "hu": 10}, r"'blob'.*unknown type"),
    ({"name": "flat", "type": "ellipse", "center": [0, 0], "axes": [5, -1], "hu": 10},
     r"'flat'.*axes must be positive"),
    ({"name": "nohu", "type": "circle", "center": [0, 0], "radius": 3}, r"'nohu'.*missing 'hu'"),
    ({"name": "typo", "type": "circle", "center": [0, 0], "radius": 3, "hu": 1, "radus": 2},
     r"'typo'.*unknown keys \['radus'\]"),
    ({"name": "nan", "type": "circle", "center": [0, 0], "radius": 3, "hu": float("nan")},
     r"'nan'.*hu must be a finite number"),
    ({"name": "bent", "type": "polygon", "vertices": [[0, 0], [10, 0], [2, 2], [0, 10]],
      "hu": 5}, r"'bent'.*convex"),
    ({"name": "clipz", "type": "circle", "center": [0, 0], "radius": 3, "hu": 1,
      "clip": [{"normal": 0, "offset": 1}]}, r"'clipz'.*clip\[0\]"),
])
def test_bad_definitions_name_the_item(item: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_mapping(_definition(**item))


def test_bar_group_expands_to_bars_of_the_stated_frequency() -> None:
    phantom = from_mapping({"name": "bars", "shapes": [
        {"name": "g", "type": "bar_group", "center": [0, 0], "lp_per_cm": 4, "bars": 3,
         "length": 10, "angle_deg": 0, "hu": 100}]})
    assert [s.name for s in phantom.shapes] == ["g/bar0", "g/bar1", "g/bar2"]
    x0, x1, _, _ = phantom.shapes[0].bounding_box_mm()
    centres = [np.mean(s.bounding_box_mm()[:2]) for s in phantom.shapes]
    assert x1 - x0 == pytest.approx(1.25)              # bar width: half of the 2.5 mm period
    assert np.diff(centres) == pytest.approx([2.5, 2.5])


def test_phantom_displays_upright_with_x_to_the_right() -> None:
    """A disc at x = +50 mm, y = +30 mm lands right of and above the image centre."""
    phantom = from_mapping({"name": "dot", "shapes": [
        {"type": "circle", "center": [50, 30], "radius": 8, "hu": 1000}]})
    geometry = ScanGeometry.parallel((128, 128), 1.0, 10)
    weight = phantom.rasterize(geometry) + 1000.0
    rows, cols = np.indices(weight.shape)
    row = (rows * weight).sum() / weight.sum()
    col = (cols * weight).sum() / weight.sum()
    assert row == pytest.approx(63.5 - 30.0, abs=0.05)
    assert col == pytest.approx(63.5 + 50.0, abs=0.05)


def test_raster_is_anti_aliased_and_preserves_area() -> None:
    radius, hu = 20.3, 500.0
    phantom = from_mapping({"name": "disc", "shapes": [
        {"type": "circle", "center": [3.3, -1.7], "radius": radius, "hu": hu}]})
    geometry = ScanGeometry.parallel((64, 64), 1.0, 10)
    image = phantom.rasterize(geometry, supersample=8) + 1000.0
    assert image.sum() * 1.0 == pytest.approx(hu * math.pi * radius**2, rel=2e-3)
    partial = (image > 0.02 * hu) & (image < 0.98 * hu)
    assert partial.sum() > 100                          # edge pixels get intermediate values
    hard = phantom.rasterize(geometry, supersample=1) + 1000.0
    assert set(np.unique(hard)) <= {0.0, hu}


def test_rasterize_mu_uses_the_water_attenuation() -> None:
    phantom = load("water_inserts")
    geometry = ScanGeometry.parallel((32, 32), 8.0, 10)
    hu = phantom.rasterize(geometry, supersample=2)
    mu = phantom.rasterize_mu(geometry, supersample=2, mu_water_per_mm=0.02)
    np.testing.assert_allclose(mu, 0.02 * (1 + hu / 1000), rtol=1e-6, atol=1e-9)


def test_forbild_matches_odl_independent_implementation() -> None:
    """Our FORBILD data file against ODL's own FORBILD code (same published table):
    pixel-centre samples agree except on a few boundary pixels."""
    odl = pytest.importorskip("odl")
    n, pixel = 256, 1.0
    geometry = ScanGeometry.parallel((n, n), pixel, 10)
    ours = load("forbild").rasterize(geometry, supersample=1)
    half = n * pixel / 2
    space = odl.uniform_discr([-half, -half], [half, half], (n, n))
    density = np.asarray(odl.phantom.forbild(space, ear=True, scale="mm").data)
    # ODL axis 0 is x, axis 1 is y (ascending); ours: rows run down y, columns along x
    theirs = 1000.0 * density.T[::-1, :] - 1000.0
    mismatch = np.abs(ours - theirs) > 0.5
    assert mismatch.mean() < 2e-3
    assert np.abs(ours - theirs)[~mismatch].max() < 0.5


def test_load_scale_shrinks_lengths_and_keeps_ct_numbers():
    full, half = load("water_inserts"), load("water_inserts", scale=0.5)
    points_mm = np.array([[0.0, 30.0, 0.0], [-60.0, 0.0, 0.0], [0.0, 95.0, 0.0]])
    np.testing.assert_array_equal(half.hu_at(points_mm / 2), full.hu_at(points_mm))
    with pytest.raises(ValueError, match="scale"):
        load("water_inserts", scale=0.0)
