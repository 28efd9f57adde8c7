"""TV prior: FGP prox optimality, adjointness, units."""

import torch

from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu
from ctpnp.priors import TVPrior, load
from ctpnp.priors.tv import gradient, gradient_adjoint, total_variation, tv_prox
from ctpnp.train.data import piecewise_smooth_hu


def _objective(z, b, lam):
    return 0.5 * (z - b).pow(2).flatten(1).sum(1) + lam * total_variation(z)


def test_gradient_adjoint_is_the_adjoint():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 1, 9, 7, generator=g, dtype=torch.float64)
    p = torch.randn(2, 2, 9, 7, generator=g, dtype=torch.float64)
    assert torch.allclose((gradient(u) * p).sum(), (u * gradient_adjoint(p)).sum())


def test_prox_objective_lower_than_at_perturbed_points():
    g = torch.Generator().manual_seed(1)
    clean = torch.as_tensor(piecewise_smooth_hu(3, 48), dtype=torch.float64)[None, None] / 2000
    b = clean + 0.05 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    lam = 0.03
    z = tv_prox(b, lam, n_iter=300)
    best = _objective(z, b, lam)
    assert best < _objective(b, b, lam)
    for scale in (1e-1, 1e-2, 1e-3):
        for _ in range(10):
            dz = scale * torch.randn(z.shape, generator=g, dtype=torch.float64)
            assert _objective(z + dz, b, lam) > best - 1e-9 * best.abs()


def test_more_iterations_do_not_increase_objective():
    g = torch.Generator().manual_seed(2)
    b = torch.rand(1, 1, 32, 32, generator=g, dtype=torch.float64)
    vals = [_objective(tv_prox(b, 0.1, n), b, 0.1).item() for n in (5, 20, 100)]
    assert vals[0] >= vals[1] >= vals[2] - 1e-9


def test_mu_interface_units_and_batch_sigma():
    prior = load("tv")
    assert isinstance(prior, TVPrior)
    hu = torch.as_tensor(piecewise_smooth_hu(5, 64))[None, None]
    x = hu_to_mu(torch.cat([hu, hu]))
    noisy = x + 0.04 * MU_WATER_PER_MM * torch.randn_like(x)  # 40 HU noise
    out = prior.prox(noisy, torch.tensor([0.0, 0.002]))
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out[0], noisy[0])  # sigma 0: identity
    assert prior.potential(out)[1] < prior.potential(noisy)[1]
    assert torch.allclose(prior.log_prior_map(x).flatten(1).sum(1), prior.potential(x), rtol=1e-4)
