"""The corpus's split, its 2-D slices for training, and the per-tissue texture measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from ctpnp.data import SOURCES, SPLITS, Volume, slices_hu, tissue_statistics
from ctpnp.data.cache import write_patient
from ctpnp.data.slices import fit_to_size, resample_slice


def test_the_split_is_by_patient_and_covers_the_corpus() -> None:
    train, validation = set(SPLITS["train"]), set(SPLITS["validation"])
    assert not train & validation
    assert train | validation == set(SOURCES)
    assert {"lung2", "head_hitachi", "head_ge"} <= validation  # a whole patient + two heads
    # patients of one archive may sit in different sets, but never the same patient twice
    assert len(SPLITS["train"]) + len(SPLITS["validation"]) == len(SOURCES)
    assert all(s.archive.filename != "CT_small.dcm" for s in SOURCES.values())


def _cache_split(folder: Path, split: str, shape: tuple[int, int, int]) -> None:
    """Cache each patient of ``split`` as a volume whose slice k holds the value k."""
    for patient in SPLITS[split]:
        hu = np.broadcast_to(np.arange(shape[0], dtype=np.int16)[:, None, None], shape).copy()
        write_patient(hu, {"patient": patient, "anatomy": "test", "licence": "none",
                           "pixel_mm": 0.5, "slice_mm": 5.0, "voxel_assumed": False,
                           "shape": list(shape), "sha256": "x"}, folder)


def test_slices_of_a_split_in_order_resampled_and_sized(tmp_path: Path) -> None:
    _cache_split(tmp_path, "validation", (2, 8, 6))
    slices = list(slices_hu("validation", cache_dir=tmp_path))
    assert len(slices) == 2 * len(SPLITS["validation"])
    assert [float(s[0, 0]) for s in slices[:2]] == [0.0, 1.0]
    assert all(s.shape == (8, 6) and s.dtype == np.float32 for s in slices)
    resized = list(slices_hu("validation", pixel_mm=1.0, size=6, cache_dir=tmp_path))
    assert resized[1].shape == (6, 6)
    np.testing.assert_array_equal(resized[1][1:5, 1:4], 1.0)  # (4, 3) of data, centred
    assert np.count_nonzero(resized[1] == -1024.0) == 36 - 12  # the rest padded with air


def test_resampling_keeps_the_field_of_view_and_constants() -> None:
    image = np.full((10, 12), 40.0, dtype=np.float32)
    assert resample_slice(image, 0.5, 1.0).shape == (5, 6)
    np.testing.assert_allclose(resample_slice(image, 1.0, 0.4), 40.0)
    assert resample_slice(image, 1.0, 0.4).shape == (25, 30)


def test_fit_to_size_crops_the_centre() -> None:
    image = np.arange(36, dtype=np.float32).reshape(6, 6)
    np.testing.assert_array_equal(fit_to_size(image, 2), image[2:4, 2:4])


def _phantom(texture_px: float, sigma_hu: float, seed: int) -> Volume:
    """Two 160² slices, 0.5 mm pixels: air, a soft-tissue disc (40 HU) in a fat ring (-100 HU),
    each with Gaussian texture of ``sigma_hu`` and grain ``texture_px``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:160, :160] - 79.5
    radius = np.hypot(y, x)
    hu = np.where(radius < 55, 40.0, np.where(radius < 75, -100.0, -1000.0))
    slices = []
    for _ in range(2):
        noise = rng.normal(size=hu.shape)
        if texture_px > 0:
            noise = ndimage.gaussian_filter(noise, texture_px)
        slices.append(hu + np.where(radius < 75, sigma_hu * noise / noise.std(), 0.0))
    return Volume(np.stack(slices).astype(np.float32), 0.5, 5.0, "test", "test", "none", False)


def test_tissue_statistics_measure_the_texture_put_in() -> None:
    white = tissue_statistics(_phantom(0.0, 10.0, 0))
    assert white["soft_tissue"]["sigma_hu"] == pytest.approx(10.0, rel=0.05)
    assert white["fat"]["sigma_hu"] == pytest.approx(10.0, rel=0.05)
    assert white["soft_tissue"]["mean_hu"] == pytest.approx(40.0, abs=1.0)
    assert white["soft_tissue"]["corr_mm"] < 0.5  # under one 0.5 mm pixel
    assert white["bone"]["n_pixels"] == 0 and np.isnan(white["bone"]["sigma_hu"])
    # Gaussian grain of 1.5 px: autocorrelation half width 2 * 1.5 * sqrt(ln 2) px = 1.25 mm.
    # Removing the local mean (2 mm) takes away some of the grain: both come out lower
    grainy = tissue_statistics(_phantom(1.5, 10.0, 1))["soft_tissue"]
    assert 0.75 * 1.25 < grainy["corr_mm"] < 1.25
    assert 0.75 * 10.0 < grainy["sigma_hu"] < 10.0
    wider = tissue_statistics(_phantom(1.5, 10.0, 1), smoothing_mm=4.0)["soft_tissue"]
    assert grainy["corr_mm"] < wider["corr_mm"] < 1.25
