"""LPN: exact prox structure (symmetric PSD Jacobians), uniform tiling, inversion, regularizer."""

import pytest
import torch

from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu
from ctpnp.priors import LPN, LPNPrior, load
from ctpnp.priors.icnn import ICNNConfig
from ctpnp.priors.patches import PatchTiling
from ctpnp.train.data import piecewise_smooth_hu

INVERSION_TOL = 1e-3  # RMS per pixel of F(y) - u, normalized intensity (1e-3 = 2 HU)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny images: one thread is faster than two fighting over a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _small_prior(seed=0, patch_size=4, stride=2) -> LPNPrior:
    torch.manual_seed(seed)
    cfg = ICNNConfig(patch_size=patch_size, channels=4, strides=(2,), out_channels=4,
                     init_log_mean=-1.0)
    net = LPN(cfg, alpha=0.01).double()
    return LPNPrior(net, sigma_train_unit=0.05, stride=stride)


def _jacobian(fn, x):
    n = x.numel()
    return torch.autograd.functional.jacobian(fn, x).reshape(n, n)


def _assert_symmetric_psd(jac):
    assert torch.isfinite(jac).all()
    torch.testing.assert_close(jac, jac.T, rtol=1e-8, atol=1e-10)
    assert torch.linalg.eigvalsh(0.5 * (jac + jac.T)).min() > -1e-10


@pytest.mark.parametrize("seed", [0, 1])
def test_patch_prox_jacobian_symmetric_psd(seed):
    prior = _small_prior(seed, patch_size=8, stride=4)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    _assert_symmetric_psd(_jacobian(prior.network, x))


@pytest.mark.parametrize(("shape", "stride"), [((8, 8), 2), ((6, 7), 2), ((5, 6), 1)])
def test_whole_image_prox_jacobian_symmetric_psd(shape, stride):
    prior = _small_prior(stride=stride)
    x = torch.rand(1, 1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _assert_symmetric_psd(_jacobian(prior.image_prox, x))


def test_whole_image_prox_is_gradient_of_convex_potential():
    prior = _small_prior()
    g = torch.Generator().manual_seed(4)
    a, b = (torch.rand(2, 1, 11, 9, dtype=torch.float64, generator=g) for _ in range(2))
    u = a.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(prior.image_potential(u).sum(), u)
    torch.testing.assert_close(prior.image_prox(a), auto)
    pa, pb = prior.image_potential(a), prior.image_potential(b)
    for t in (0.25, 0.5, 0.75):  # convex along a segment
        mid = prior.image_potential((1 - t) * a + t * b)
        assert (mid <= (1 - t) * pa + t * pb + 1e-12).all()


@pytest.mark.parametrize(("p", "s", "shape"), [(8, 4, (12, 12)), (8, 2, (9, 14)), (4, 4, (5, 7))])
def test_tiling_covers_every_pixel_equally(p, s, shape):
    tiling = PatchTiling(p, s)
    x = torch.rand(2, 1, *shape, dtype=torch.float64)
    patches = tiling.extract(x)
    assert patches.shape == (2 * tiling.grid(*shape)[0] * tiling.grid(*shape)[1], 1, p, p)
    torch.testing.assert_close(tiling.adjoint_mean(patches, 2, *shape), x)
    ones = torch.ones_like(patches)  # pixel counts: exactly `coverage` patches per pixel
    torch.testing.assert_close(
        tiling.adjoint_mean(ones, 2, *shape) * tiling.coverage,
        torch.full_like(x, float(tiling.coverage)),
    )


# ----- shipped weights ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load("lpn")


def _phantom_mu(seed=7, size=48):
    return hu_to_mu(torch.as_tensor(piecewise_smooth_hu(seed, size)))[None, None]


def test_inversion_reaches_tolerance(shipped):
    u = _phantom_mu(size=32) / (2 * MU_WATER_PER_MM)
    result = shipped.invert(u)
    assert result.residual.max() < INVERSION_TOL
    recomputed = (shipped.image_prox(result.y) - u).pow(2).mean().sqrt()
    assert recomputed < INVERSION_TOL


def test_regularizer_finite_and_larger_on_noisy_and_streaky_images(shipped):
    clean = _phantom_mu(size=32)
    g = torch.Generator().manual_seed(0)
    noisy = clean + 0.05 * MU_WATER_PER_MM * torch.randn(clean.shape, generator=g)  # 50 HU
    rows = torch.arange(32, dtype=torch.float32)
    streaks = clean + 0.1 * MU_WATER_PER_MM * torch.sin(rows[:, None] * 0.9 + rows[None, :] * 0.4)
    r = shipped.potential(torch.cat([clean, noisy, streaks]))
    assert shipped.last_inversion.residual.max() < INVERSION_TOL
    assert torch.isfinite(r).all()
    assert r[1] > r[0] and r[2] > r[0]


def test_log_prior_map_highlights_the_corrupted_region(shipped):
    clean = _phantom_mu()
    corrupted = clean.clone()
    g = torch.Generator().manual_seed(1)
    corrupted[..., :, 32:] += 0.08 * MU_WATER_PER_MM * torch.randn(1, 1, 48, 16, generator=g)
    m = shipped.log_prior_map(corrupted)
    assert shipped.last_inversion.residual.max() < INVERSION_TOL
    assert m.shape == clean.shape and torch.isfinite(m).all()
    m_clean = shipped.log_prior_map(clean)
    right, left = (..., slice(None), slice(32, None)), (..., slice(None), slice(None, 16))
    assert m[right].mean() > m_clean[right].mean()  # corruption raises the map where it is
    # columns < 16 lie only in patches that end before column 32: their values stay put
    torch.testing.assert_close(m[left], m_clean[left], rtol=0.02, atol=1e-3)


def test_prox_mu_interface_and_relaxation(shipped):
    x = _phantom_mu(size=48)
    sigma_train_mu = shipped.sigma_train_unit * 2 * MU_WATER_PER_MM
    full = shipped.prox(x, sigma_train_mu)
    assert full.shape == x.shape and full.dtype == torch.float32
    torch.testing.assert_close(shipped.prox(x, 10 * sigma_train_mu), full)  # capped at t = 1
    half = shipped.prox(x, sigma_train_mu / 2)  # t = 1/2
    torch.testing.assert_close(half, 0.5 * x + 0.5 * full)
    both = shipped.prox(torch.cat([x, x]), torch.tensor([sigma_train_mu, sigma_train_mu / 2]))
    torch.testing.assert_close(both, torch.cat([full, half]))
