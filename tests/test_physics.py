"""Low-dose physics: HU conversion, Poisson counts, post-log data, statistical weights."""

import math

import pytest
import torch

from ctpnp import physics


def test_hu_mu_round_trip_and_anchors():
    hu = torch.tensor([-1000.0, 0.0, 1000.0, 37.5])
    mu = physics.hu_to_mu(hu)
    assert mu[0] == 0 and mu[1] == pytest.approx(physics.MU_WATER_PER_MM)
    assert mu[2] == pytest.approx(2 * physics.MU_WATER_PER_MM)
    torch.testing.assert_close(physics.mu_to_hu(mu), hu)
    assert physics.hu_to_mu(torch.tensor(0.0), mu_water_per_mm=0.02) == pytest.approx(0.02)


def test_counts_follow_poisson_mean_and_variance():
    p = torch.full((1, 1, 400, 500), 2.0)
    photons = 5000.0
    counts = physics.simulate_counts(p, photons, seed=3).double()
    expected = photons * math.exp(-2.0)
    n = counts.numel()
    # mean within 5 standard errors; variance of a Poisson variable equals its mean
    assert abs(counts.mean().item() - expected) < 5 * math.sqrt(expected / n)
    assert abs(counts.var().item() / expected - 1) < 5 * math.sqrt(2 / n)


def test_electronic_noise_adds_its_variance_and_seed_reproduces():
    p = torch.full((1, 1, 300, 400), 1.0)
    kwargs = dict(electronic_noise=10.0, seed=11)
    a = physics.simulate_counts(p, 1000.0, **kwargs)
    b = physics.simulate_counts(p, 1000.0, **kwargs)
    c = physics.simulate_counts(p, 1000.0, electronic_noise=10.0, seed=12)
    assert torch.equal(a, b) and not torch.equal(a, c)
    expected_var = 1000 * math.exp(-1) + 100
    assert abs(a.double().var().item() / expected_var - 1) < 5 * math.sqrt(2 / a.numel())


def test_per_channel_photons_and_post_log_mean():
    p = torch.zeros((1, 1, 2000, 3)) + torch.tensor([0.5, 1.0, 1.5])
    photons = torch.tensor([1e6, 2e6, 4e6])
    y = physics.simulate_low_dose(p, photons, seed=0)
    torch.testing.assert_close(y.mean(dim=2).flatten(), p[0, 0, 0], atol=3e-3, rtol=0)


def test_zero_counts_are_clamped_before_the_log():
    p = torch.full((1, 1, 10, 10), 30.0)  # exp(-30) * 100 photons: essentially all zero
    y = physics.simulate_low_dose(p, 100.0, electronic_noise=5.0, seed=1)
    assert torch.isfinite(y).all()
    assert y.max() <= math.log(100 / physics.MIN_COUNTS) + 1e-5


def test_statistical_weights_are_inverse_variance():
    counts = torch.tensor([100.0, 400.0, 0.0])
    w = physics.statistical_weights(counts, electronic_noise=10.0)
    torch.testing.assert_close(w[:2], counts[:2] ** 2 / (counts[:2] + 100.0))
    assert w[2] > 0


@pytest.mark.parametrize("photons", [0.0, -5.0, float("inf"), torch.ones(7)])
def test_bad_photons_are_rejected(photons):
    with pytest.raises(ValueError, match="photons"):
        physics.simulate_low_dose(torch.zeros((1, 1, 4, 5)), photons)


@pytest.mark.parametrize("thickness", [1.0, 2.0, 3.0])
def test_noise_variance_estimate_is_the_mean_over_rays(shepp_logan_mu, thickness):
    """The estimate follows the mean variance over the rays, also where it spans orders
    of magnitude: a body up to three times as attenuating beside air, where the
    variance of the median ray is 20 times below the mean."""
    from conftest import geometries

    from ctpnp import Tomography

    op = Tomography(geometries()["fan-curved"])
    clean = op.forward(shepp_logan_mu * thickness)
    counts = physics.simulate_counts(clean, 1e4, seed=2)
    noisy = physics.counts_to_line_integrals(counts, 1e4)
    true_mean = float((1.0 / counts.clamp_min(physics.MIN_COUNTS)).mean())
    estimate = float(physics.estimate_noise_variance(noisy)[0])
    assert true_mean / 1.5 < estimate < 1.5 * true_mean
    # noiseless data: only the projected anatomy remains (on this coarse 1.5 mm grid,
    # with Shepp-Logan's sharp ellipses, it reads as up to 30 % of the noise at 1e4)
    assert float(physics.estimate_noise_variance(clean)[0]) < 0.35 * true_mean
