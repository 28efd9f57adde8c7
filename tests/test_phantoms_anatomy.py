"""The seeded random anatomy generator: determinism, variety, documented statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ctpnp import ScanGeometry
from ctpnp.phantoms import Phantom, random_anatomy
from ctpnp.phantoms.texture import texture_hu

FOV_MM = 400.0
SEEDS = range(16)


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return [random_anatomy(seed) for seed in SEEDS]


def _shape(phantom: Phantom, name: str):
    return next(s for s in phantom.shapes if s.name == name)


def _lesions(phantom: Phantom) -> list:
    return [s for s in phantom.shapes if s.name.startswith("lesion")]


def test_same_seed_same_phantom_and_raster() -> None:
    geometry = ScanGeometry.parallel((64, 64), FOV_MM / 64, 10)
    first, again = random_anatomy(7), random_anatomy(7)
    assert first == again
    np.testing.assert_array_equal(first.rasterize(geometry), again.rasterize(geometry))
    assert random_anatomy(8) != first


def test_images_are_varied(phantoms: list[Phantom]) -> None:
    geometry = ScanGeometry.parallel((96, 96), FOV_MM / 96, 10)
    images = [p.rasterize(geometry, supersample=2).ravel() + 1000.0 for p in phantoms[:8]]
    for a, b in itertools.combinations(images, 2):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) > 0.15
        body_a, body_b = a > 500, b > 500   # fat and everything denser
        overlap = (body_a & body_b).sum() / (body_a | body_b).sum()
        assert overlap < 0.97


def test_body_statistics_follow_the_documented_ranges(phantoms: list[Phantom]) -> None:
    widths, aspects = [], []
    for phantom in phantoms:
        body = _shape(phantom, "body")
        width, depth = 2 * body.axes_mm[0], 2 * body.axes_mm[1]
        widths.append(width / FOV_MM)
        aspects.append(depth / width)
        fat_hu = -1000 + body.hu
        tissue_hu = fat_hu + _shape(phantom, "soft_tissue").hu
        assert -120 <= fat_hu <= -80 and 35 <= tissue_hu <= 55
        liver_hu = tissue_hu + _shape(phantom, "liver").hu
        assert 50 <= liver_hu <= 70
    assert min(widths) >= 0.70 and max(widths) <= 0.92
    assert min(aspects) >= 0.62 and max(aspects) <= 0.80
    # uniform draws: the sample means sit near the middle of the ranges
    assert np.mean(widths) == pytest.approx(0.81, abs=0.05)
    assert np.mean(aspects) == pytest.approx(0.71, abs=0.05)


def test_lesions_have_the_requested_size_and_contrast(phantoms: list[Phantom]) -> None:
    counts, contrasts = [], []
    for phantom in phantoms:
        lesions = _lesions(phantom)
        counts.append(len(lesions))
        liver = _shape(phantom, "liver")
        liver_hu = -1000 + sum(_shape(phantom, n).hu for n in ("body", "soft_tissue", "liver"))
        for lesion in lesions:
            assert 2.0 <= lesion.axes_mm[0] == lesion.axes_mm[1] <= 10.0
            assert 5.0 <= abs(lesion.hu) <= 40.0
            contrasts.append(lesion.hu)
            centre = np.array([[-lesion.center_mm[1], lesion.center_mm[0], 0.0]])  # image frame
            # inside the liver and nothing else: the lesion's CT number is liver + contrast,
            # plus the liver's texture (and no other tissue's)
            x, y = np.array([lesion.center_mm[0]]), np.array([lesion.center_mm[1]])
            assert liver.contains(x, y, 0.0)
            liver_texture = [t for t in phantom.textures if t.host is liver]
            texture = texture_hu(tuple(liver_texture), x, y, 0.0)[0]
            assert texture_hu(phantom.textures, x, y, 0.0)[0] == texture
            assert phantom.hu_at(centre)[0] == pytest.approx(liver_hu + lesion.hu + texture)
    assert min(counts) >= 1 and max(counts) <= 5
    assert min(contrasts) < 0 < max(contrasts)


def test_lesion_controls_are_honoured_in_the_raster() -> None:
    phantom = random_anatomy(3, lesion_radius_mm=(8.0, 8.0), lesion_contrast_hu=(20.0, 20.0),
                             n_lesions=(3, 3), texture=False)
    lesions = _lesions(phantom)
    assert len(lesions) == 3
    geometry = ScanGeometry.parallel((200, 200), 2.0, 10)
    image = phantom.rasterize(geometry)
    liver_hu = -1000 + sum(_shape(phantom, n).hu for n in ("body", "soft_tissue", "liver"))
    for lesion in lesions:
        assert abs(lesion.hu) == pytest.approx(20.0) and lesion.axes_mm[0] == 8.0
        row = round(99.5 - lesion.center_mm[1] / 2.0)
        col = round(99.5 + lesion.center_mm[0] / 2.0)
        assert image[row, col] == pytest.approx(liver_hu + lesion.hu, abs=1e-3)


def test_everything_stays_inside_the_body(phantoms: list[Phantom]) -> None:
    geometry = ScanGeometry.parallel((100, 100), FOV_MM / 100, 10)
    for phantom in phantoms[:6]:
        image = phantom.rasterize(geometry, supersample=2)
        body = _shape(phantom, "body")
        axis0, axis1 = (np.indices(image.shape) - 49.5) * geometry.pixel_mm
        # pixels whose whole area is at least a pixel away from the body outline are pure air
        outside = ~body.contains(axis1, -axis0, 0.0)
        for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            outside &= ~body.contains(axis1 + shift[1] * geometry.pixel_mm,
                                      -axis0 - shift[0] * geometry.pixel_mm, 0.0)
        assert np.all(image[outside] == -1000.0)
        assert image.max() > 500 and image[~outside].mean() > -300


def test_bad_generator_arguments_raise() -> None:
    with pytest.raises(ValueError, match="lesion_radius_mm"):
        random_anatomy(0, lesion_radius_mm=(5.0, 2.0))
    with pytest.raises(ValueError, match="n_lesions"):
        random_anatomy(0, n_lesions=(1.5, 3))
    with pytest.raises(ValueError, match="fov_mm"):
        random_anatomy(0, fov_mm=-1.0)
