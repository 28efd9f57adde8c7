"""Quality of a volume: per-slice maps and verdicts, NaN slices skipped, results cached."""

import numpy as np
import pytest
import torch
from conftest import geometries

from ctpnp import Tomography, physics
from ctpnp.priors import load
from ctpnp.priors.registry import fingerprint
from ctpnp.quality import load_calibration, quality_maps, region_scores, slice_verdicts
from ctpnp.quality.volume import volume_quality


@pytest.fixture(scope="module")
def prior():
    torch.set_num_threads(1)
    return load("prox")


def test_volume_quality_matches_the_slice_functions_and_resumes(tmp_path, prior,
                                                                shepp_logan_mu):
    geometry = geometries()["fan-curved"]
    op = Tomography(geometry)
    y = physics.simulate_low_dose(op.forward(shepp_logan_mu), 1e5, seed=0)
    volume = np.stack([shepp_logan_mu[0, 0].numpy(), np.full(geometry.image_shape, np.nan)])
    sinograms = np.stack([y[0, 0].numpy(), y[0, 0].numpy()])
    calibration = load_calibration("prox", fingerprint("prox"))
    quality = volume_quality(volume.astype(np.float32), sinograms, geometry, prior,
                             calibration, tmp_path / "cache")
    maps = quality_maps(shepp_logan_mu, y, op, prior)
    (verdict,) = slice_verdicts(region_scores(maps, shepp_logan_mu, calibration), calibration)
    assert quality.verdicts[0] == verdict and quality.verdicts[1] is None
    assert np.allclose(quality.log_prior[0], maps.prior_nats[0, 0].numpy(), atol=1e-6)
    assert np.isnan(quality.log_prior[1]).all() and np.isnan(quality.implausibility[1]).all()
    z = quality.implausibility[0]
    assert np.nanmax(z) == pytest.approx(verdict.score, rel=1e-5)
    assert np.isfinite(z[64, 64]) and z[64, 64] == z[79, 79] != z[80, 80]  # per 16-px region
    # a second call reads the cached slices: a changed input is not looked at again
    again = volume_quality(np.zeros_like(volume, dtype=np.float32), sinograms, geometry, prior,
                           calibration, tmp_path / "cache")
    assert again.verdicts == quality.verdicts
    assert np.array_equal(again.implausibility, quality.implausibility, equal_nan=True)


def test_without_a_calibration_only_the_prior_map(tmp_path, prior, shepp_logan_mu):
    geometry = geometries()["fan-curved"]
    volume = shepp_logan_mu[0].numpy()
    quality = volume_quality(volume, np.zeros((1, *geometry.sinogram_shape), np.float32),
                             geometry, prior, None, tmp_path)
    assert quality.implausibility is None and quality.verdicts == [None]
    assert np.allclose(quality.log_prior, prior.log_prior_map(shepp_logan_mu)[0].numpy(),
                       atol=1e-6)
    assert volume_quality(volume, np.zeros((1, *geometry.sinogram_shape), np.float32),
                          geometry, load("bm3d"), None, tmp_path / "b").log_prior is None
