"""Quality maps: the data-consistency map is 1 under the noise model and rises where the image
is wrong; region means; the prior map comes from the prior when it has one."""

import pytest
import torch
from conftest import geometries

from ctpnp import Tomography, physics
from ctpnp.priors import load
from ctpnp.quality import (
    body_regions,
    data_consistency_map,
    expand_regions,
    quality_maps,
    region_means,
)


@pytest.fixture(scope="module")
def op() -> Tomography:
    torch.set_num_threads(1)
    return Tomography(geometries()["fan-curved"])


def _gaussian_data(op, x, variance, seed=0):
    clean = op.forward(x)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    return clean + variance**0.5 * noise


def test_data_consistency_is_one_for_the_true_image(op, shepp_logan_mu):
    variance = 1e-3
    y = _gaussian_data(op, shepp_logan_mu, variance)
    d = data_consistency_map(shepp_logan_mu, y, op, torch.tensor([variance]))
    covered = op.adjoint(torch.ones_like(y)) > 0
    assert d.shape == shepp_logan_mu.shape
    assert abs(float(d[covered].mean()) - 1.0) < 0.03
    # a wrong variance moves it in proportion: the map is normalized by the noise model
    d_half = data_consistency_map(shepp_logan_mu, y, op, torch.tensor([2 * variance]))
    assert torch.allclose(d_half, d / 2, rtol=1e-4, atol=1e-6)


def test_data_consistency_rises_where_the_image_is_wrong(op, shepp_logan_mu):
    variance = 1e-3
    y = _gaussian_data(op, shepp_logan_mu, variance)
    wrong = shepp_logan_mu.clone()
    wrong[..., 60:68, 40:48] += physics.hu_difference_to_mu(300.0)
    d = data_consistency_map(wrong, y, op, torch.tensor([variance]))
    inside, far = float(d[..., 60:68, 40:48].mean()), float(d[..., 20:28, 100:108].mean())
    assert inside > 5.0 > 2.0 > far > 0.5


def test_per_reading_variance_is_accepted(op, shepp_logan_mu):
    variance = torch.full(op.sinogram_shape, 1e-3)[None, None]
    y = _gaussian_data(op, shepp_logan_mu, 1e-3)
    per_item = data_consistency_map(shepp_logan_mu, y, op, torch.tensor([1e-3]))
    assert torch.allclose(data_consistency_map(shepp_logan_mu, y, op, variance), per_item)
    with pytest.raises(ValueError, match="positive"):
        data_consistency_map(shepp_logan_mu, y, op, torch.tensor([0.0]))


def test_region_means_and_expansion_cover_cut_regions():
    image = torch.arange(20 * 20, dtype=torch.float32).reshape(1, 1, 20, 20)
    means = region_means(image, 16)
    assert means.shape == (1, 1, 2, 2)
    assert float(means[0, 0, 1, 1]) == pytest.approx(float(image[..., 16:, 16:].mean()))
    assert float(means[0, 0, 0, 1]) == pytest.approx(float(image[..., :16, 16:].mean()))
    full = expand_regions(means, (20, 20), 16)
    assert full.shape == image.shape and float(full[0, 0, 19, 3]) == float(means[0, 0, 1, 0])


def test_body_regions_need_a_quarter_of_tissue():
    mu = torch.zeros(1, 1, 32, 32)
    mu[..., :16, :4] = physics.MU_WATER_PER_MM      # a quarter of the top-left region
    mu[..., 16:, 16:19] = physics.MU_WATER_PER_MM   # less than a quarter
    inside = body_regions(mu, 16)[0, 0]
    assert inside.tolist() == [[True, False], [False, False]]


def test_quality_maps_use_the_prior_map_when_there_is_one(op, shepp_logan_mu):
    y = _gaussian_data(op, shepp_logan_mu, 1e-3)
    maps = quality_maps(shepp_logan_mu, y, op, load("prox"))
    assert maps.prior_nats.shape == shepp_logan_mu.shape
    assert torch.isfinite(maps.prior_nats).all()
    assert maps.noise_variance.shape == (1,)
    # the variance defaults to the solvers' estimate from y
    assert torch.allclose(maps.noise_variance, physics.estimate_noise_variance(y).double())
    assert maps.residual_hu.shape == maps.asymmetry_hu.shape == shepp_logan_mu.shape
    assert float(maps.residual_hu.max()) > 0 and bool((maps.asymmetry_hu >= 0).all())
    assert quality_maps(shepp_logan_mu, y, op, load("bm3d")).prior_nats is None


def test_a_judge_makes_the_denoiser_maps_and_the_prior_keeps_its_map(op, shepp_logan_mu):
    y = _gaussian_data(op, shepp_logan_mu, 1e-3)
    prox, gmm = load("prox"), load("gmm")
    own, judged = quality_maps(shepp_logan_mu, y, op, gmm), quality_maps(
        shepp_logan_mu, y, op, gmm, judge=prox)
    by_prox = quality_maps(shepp_logan_mu, y, op, prox)
    assert torch.equal(judged.residual_hu, by_prox.residual_hu)
    assert torch.equal(judged.asymmetry_hu, by_prox.asymmetry_hu)
    assert torch.equal(judged.prior_nats, own.prior_nats)
    assert not torch.allclose(judged.residual_hu, own.residual_hu)


class _Blur:
    """A prox with a symmetric 3×3 kernel: equivariant to every flip and quarter turn."""

    def prox(self, x, sigma):
        kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        return torch.nn.functional.conv2d(x, kernel[None, None], padding=1)


class _Shift(_Blur):
    """A prox that also moves the image one pixel right: not equivariant."""

    def prox(self, x, sigma):
        return torch.roll(super().prox(x, sigma), 1, dims=-1)


def test_equivariant_spread_vanishes_only_for_an_equivariant_prior(shepp_logan_mu):
    from ctpnp.quality import equivariant_spread_hu

    x = shepp_logan_mu.expand(2, -1, -1, -1)
    still = equivariant_spread_hu(_Blur(), x, 0.001)
    moved = equivariant_spread_hu(_Shift(), x, 0.001)
    assert still.shape == moved.shape == x.shape
    assert float(still.abs().max()) < 1e-3  # HU: rounding only
    assert float(moved.max()) > 100.0  # a one-pixel shift of the skull's edge, in HU


def test_denoiser_maps_measure_the_move_and_the_asymmetry(shepp_logan_mu):
    from ctpnp.quality import denoiser_maps_hu

    x = shepp_logan_mu.expand(2, -1, -1, -1)
    residual, asymmetry = denoiser_maps_hu(_Blur(), x, torch.tensor([0.001, 0.002]))
    expected = physics.mu_difference_to_hu((x - _Blur().prox(x, 0.001)).abs())
    assert torch.allclose(residual, expected, atol=1e-3)
    assert float(asymmetry.max()) < 1e-3  # the blur commutes with the transpose
    _, shifted = denoiser_maps_hu(_Shift(), x, 0.001)
    assert float(shifted.max()) > 100.0  # a shift right is a shift down once transposed


def test_region_rmse_is_per_region_and_in_hu():
    from ctpnp.quality import region_rmse_hu

    reference = torch.zeros(1, 1, 32, 32)
    hu = reference.clone()
    hu[..., :16, 16:] = 30.0
    hu[..., 16:, :16:2] = 40.0  # half the pixels of a region: RMSE 40 / sqrt(2)
    rmse = region_rmse_hu(hu, reference, 16)[0, 0]
    assert torch.allclose(rmse, torch.tensor([[0.0, 30.0], [40.0 / 2**0.5, 0.0]],
                                             dtype=torch.float64))
