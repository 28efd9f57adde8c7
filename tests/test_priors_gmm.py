"""The Gaussian-mixture patch prior: an exact prox by construction, its potential, its map."""

import pytest
import torch

from ctpnp.physics import hu_to_mu
from ctpnp.priors.gmm import (
    GMMPatchPrior,
    PatchGMM,
    _responsibilities,
    patch_peak_nll,
    patch_posterior,
)
from ctpnp.priors.normalization import mu_to_unit, sigma_unit_to_mu


def _random_gmm(seed: int = 0, k: int = 3, p: int = 4, rank: int = 5) -> PatchGMM:
    gen = torch.Generator().manual_seed(seed)
    d = p * p
    factors = 0.01 * torch.randn(k, d, d, generator=gen, dtype=torch.float64)
    cov = factors @ factors.transpose(1, 2) + 1e-4 * torch.eye(d, dtype=torch.float64)
    means = 0.5 + 0.1 * torch.randn(k, d, generator=gen, dtype=torch.float64)
    log_w = torch.log_softmax(torch.randn(k, generator=gen, dtype=torch.float64), 0)
    return PatchGMM.from_covariances(means, cov, log_w, rank).to("cpu", torch.float64)


def _image(seed: int, size: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    hu = 300 * torch.randn(1, 1, size, size, generator=gen, dtype=torch.float64)
    return hu_to_mu(hu)


SIGMA_MU = sigma_unit_to_mu(0.05)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_denoiser_is_the_gradient_step_of_the_patch_likelihood(stride):
    prior = GMMPatchPrior(_random_gmm(), stride, 0.05)
    z = _image(1)
    u = mu_to_unit(z).requires_grad_(True)
    s = torch.tensor([0.05], dtype=torch.float64)
    denoised, nll = prior.denoise_unit(u, s)
    coverage = (4 // stride) ** 2
    (grad,) = torch.autograd.grad(nll.sum() / coverage, u)
    # D = Id - grad g with g = sigma^2 / c sum_i -log p_sigma(P_i u)
    torch.testing.assert_close(denoised, (u - 0.05**2 * grad).detach(), rtol=1e-9, atol=1e-9)


def test_the_jacobian_is_symmetric_positive_semidefinite():
    """D = grad of a convex function: the prox of some phi (Gribonval & Nikolova)."""
    prior = GMMPatchPrior(_random_gmm(2), 2, 0.05)
    z = mu_to_unit(_image(3))
    s = torch.tensor([0.05], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda u: prior.denoise_unit(u, s)[0], z)
    jac = jac.reshape(64, 64)
    torch.testing.assert_close(jac, jac.T, rtol=1e-8, atol=1e-10)
    assert torch.linalg.eigvalsh(jac).min() > -1e-10
    # and not the identity: the prior does something
    assert torch.linalg.eigvalsh(jac).min() < 0.5


def test_prox_output_minimizes_phi_plus_distance_among_other_outputs():
    """prox_{sigma^2 R}(z) beats every other point where R is known (other prox outputs)."""
    prior = GMMPatchPrior(_random_gmm(4), 2, 0.05)
    z = _image(5)
    s_unit = 0.05
    x, r = prior.prox_and_potential(z, SIGMA_MU)
    best = s_unit**2 * r + 0.5 * (mu_to_unit(x) - mu_to_unit(z)).pow(2).sum()
    worse = 0
    for seed in range(6, 26):
        perturbation = _image(seed) - hu_to_mu(torch.zeros((), dtype=torch.float64))
        z_other = z + 0.3 * perturbation
        x_o, r_o = prior.prox_and_potential(z_other, SIGMA_MU)
        value = s_unit**2 * r_o + 0.5 * (mu_to_unit(x_o) - mu_to_unit(z)).pow(2).sum()
        assert float(value) >= float(best) - 1e-9
        worse += float(value) > float(best) + 1e-6
    assert worse == 20


def test_the_log_prior_map_sums_to_the_potential_at_the_prox_output():
    prior = GMMPatchPrior(_random_gmm(6), 2, 0.05)
    x = _image(7)
    _, r = prior.prox_and_potential(x, sigma_unit_to_mu(0.05))
    torch.testing.assert_close(prior.log_prior_map(x).sum((1, 2, 3)), r, rtol=1e-9, atol=1e-9)


def test_low_rank_matches_the_full_covariance_model_it_defines():
    """The rank-r posterior is exact for the rank-r + isotropic covariance."""
    gen = torch.Generator().manual_seed(8)
    full = _random_gmm(9, rank=16)
    cut = _random_gmm(9, rank=5)
    # rebuild the full covariances of the cut model and compare with a rank-16 model of them
    eye = torch.eye(16, dtype=torch.float64)
    cov = (cut.basis * cut.variances[:, None]) @ cut.basis.transpose(1, 2) + \
        cut.residual_variance[:, None, None] * (eye - cut.basis @ cut.basis.transpose(1, 2))
    rebuilt = PatchGMM.from_covariances(cut.means, cov, cut.log_weights, 16)
    y = 0.5 + 0.2 * torch.randn(50, 16, generator=gen, dtype=torch.float64)
    for a, b in zip(patch_posterior(cut, y, 0.01), patch_posterior(rebuilt, y, 0.01),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert not torch.allclose(patch_posterior(full, y, 0.01)[0], patch_posterior(cut, y, 0.01)[0])


def test_any_image_size_keeps_its_shape_and_sigma_acts_per_image():
    prior = GMMPatchPrior(_random_gmm(10).to("cpu"), 2, 0.05)
    air = torch.zeros(2, 1, 13, 10)
    out = mu_to_unit(prior.prox(air, torch.tensor([SIGMA_MU, 4 * SIGMA_MU])))
    assert out.shape == air.shape and out.dtype == air.dtype
    # the mixture lives near water (0.5): the noisier image is pulled further towards it
    level = out.mean((1, 2, 3))
    assert 0 < float(level[0]) < float(level[1]) < 0.5
    # images of several blocks of patches each: the batch equals its images one by one
    images = mu_to_unit(torch.cat([_image(20, 70), _image(21, 70)])).float()
    sigmas = torch.tensor([0.05, 0.1])
    batch = prior.denoise_unit(images, sigmas)
    for i in range(2):
        alone = prior.denoise_unit(images[i:i + 1], sigmas[i:i + 1])
        torch.testing.assert_close(batch[0][i:i + 1], alone[0])
        # the patch terms (nats) cancel large float32 terms: to a thousandth of a nat
        torch.testing.assert_close(batch[1][i:i + 1], alone[1], rtol=0, atol=1e-3)


def test_stride_must_divide_the_patch_and_bad_cards_name_the_file():
    with pytest.raises(ValueError, match="stride 3"):
        GMMPatchPrior(_random_gmm(), 3, 0.05)
    tensors = {k: v.float() for k, v in _random_gmm().tensors().items()}
    card = {"model": "gmm", "architecture": {"components": 3, "patch_size": 4, "rank": 5,
                                             "stride": 2}, "sigma_ref_unit": 0.025}
    GMMPatchPrior.from_weights(tensors, card, "ok.safetensors")
    with pytest.raises(ValueError, match=r"bad\.safetensors.*not a valid GMM card"):
        GMMPatchPrior.from_weights(tensors, {"model": "gmm"}, "bad.safetensors")
    wrong = dict(card, architecture=dict(card["architecture"], rank=6))
    with pytest.raises(ValueError, match=r"wrong\.safetensors"):
        GMMPatchPrior.from_weights(tensors, wrong, "wrong.safetensors")


def test_patch_terms_count_from_the_peak_bound():
    """Every patch term is >= 0 and reaches about 0 at a component's mean."""
    gmm = _random_gmm(8)
    prior = GMMPatchPrior(gmm, 2, 0.05)
    s = torch.tensor([0.05, 0.01], dtype=torch.float64)
    u = mu_to_unit(torch.cat([_image(9), _image(10)]))
    _, nll = prior.patch_terms(u, s)
    assert nll.min() >= 0
    # an image tiled with the likeliest component's mean: its patches sit at a peak
    best = int(gmm.log_weights.argmax())
    tile = gmm.means[best].reshape(1, 1, 4, 4).repeat(1, 1, 2, 2)
    _, at_mean = GMMPatchPrior(gmm, 4, 0.05).patch_terms(tile, s[:1])
    raw = patch_posterior(gmm, gmm.means[best:best + 1], 0.05**2)[1]
    torch.testing.assert_close(at_mean[0, 0], raw[0] - patch_peak_nll(gmm, 0.05**2))
    assert float(at_mean.max()) < 0.1 * float(nll.mean())


def test_far_components_weigh_exactly_zero_and_change_nothing():
    """Components 87-103 nats below a patch's best would get subnormal float32 weights
    (arithmetic tens of times slower); every component far below weighs exactly 0, and
    the float32 posterior still equals the float64 one, computed without any cut."""
    log_joint = torch.tensor([[0.0, -10.0, -95.0, -300.0], [-5.0, -100.0, 0.0, -90.0]])
    weights, log_p = _responsibilities(log_joint)
    assert bool((weights[0, [2, 3]] == 0).all()) and bool((weights[1, [1, 3]] == 0).all())
    assert float(weights[weights > 0].min()) >= torch.finfo(torch.float32).tiny
    torch.testing.assert_close(weights.double(), torch.softmax(log_joint.double(), 1))
    torch.testing.assert_close(log_p.double(), torch.logsumexp(log_joint.double(), 1))

    gmm = _random_gmm(11)
    shift = torch.tensor([[0.0], [0.0], [0.6]], dtype=torch.float64)  # one component far off
    far = PatchGMM(**{**gmm.tensors(), "means": gmm.means + shift})
    gen = torch.Generator().manual_seed(12)
    y = far.means[0] + 0.02 * torch.randn(64, 16, generator=gen, dtype=torch.float64)
    exact = patch_posterior(far, y, 0.01**2)
    fast = patch_posterior(far.to("cpu"), y.float(), 0.01**2)
    torch.testing.assert_close(fast[0].double(), exact[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(fast[1].double(), exact[1], rtol=1e-5, atol=1e-3)
