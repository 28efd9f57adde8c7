"""Fitting the patch mixture: it learns, it resumes after a crash, its card says what it saw."""

import math

import pytest
import torch

from ctpnp.physics import hu_to_mu, mu_to_hu
from ctpnp.priors import load
from ctpnp.priors.gmm import GMMPatchPrior, PatchGMM, patch_posterior
from ctpnp.quality import psnr_hu
from ctpnp.train.data import phantom_slices_hu
from ctpnp.train.gmm import GMMTrainConfig, fit_patch_gmm, validate_gmm

CONFIG = GMMTrainConfig(components=6, rank=6, patch_size=4, stride=2, n_patches=6000,
                        iterations=4, tol_nats=0.0, train_seeds=(0, 1), val_seeds=(100_000,),
                        n_val_crops=8, val_crop_px=16, slice_size=128, pixel_mm=3.0)


class _Crash(RuntimeError):
    pass


def test_fit_resumes_after_a_crash_to_the_same_weights(tmp_path):
    whole = fit_patch_gmm(CONFIG, tmp_path / "whole" / "gmm.safetensors")

    def crash_after_two(event):
        if event.get("iteration") == 2:
            raise _Crash

    resumed_path = tmp_path / "resumed" / "gmm.safetensors"
    with pytest.raises(_Crash):
        fit_patch_gmm(CONFIG, resumed_path, progress=crash_after_two)
    assert not resumed_path.exists()
    events = []
    fit_patch_gmm(CONFIG, resumed_path, progress=events.append)
    assert events[0] == {"event": "resumed", "iteration": 2}
    a, b = load(whole), load(resumed_path)
    for name, tensor in a.gmm.tensors().items():
        torch.testing.assert_close(b.gmm.tensors()[name], tensor, rtol=0, atol=0)
    card = b.card
    assert card["training"]["iterations"] == 4
    assert [h["iteration"] for h in card["training"]["history"]] == [1, 2, 3, 4]
    assert card["data"]["train_seeds"] == [0, 1] and card["validation"]["seeds"] == [100_000]
    # EM never lowers the likelihood of its own patches
    logliks = [h["loglik_nats"] for h in card["training"]["history"] if not h["reseeded"]]
    assert logliks == sorted(logliks)
    # another config refuses the checkpoint instead of mixing runs
    with pytest.raises(ValueError, match="another config"):
        fit_patch_gmm(GMMTrainConfig(**{**CONFIG.__dict__, "components": 5}), resumed_path)


def test_the_fitted_prior_denoises_a_held_out_phantom(tmp_path):
    prior = load(fit_patch_gmm(CONFIG, tmp_path / "gmm.safetensors"))
    assert prior.card["validation"]["val_psnr_db"] > prior.card["validation"][
        "val_noisy_psnr_db"] + 3
    clean = hu_to_mu(torch.as_tensor(next(iter(phantom_slices_hu([200_000], 128, 3.0))))[
        None, None])
    sigma_mu = float(hu_to_mu(torch.tensor(50.0)) - hu_to_mu(torch.tensor(0.0)))
    noisy = clean + sigma_mu * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    before = float(psnr_hu(mu_to_hu(noisy), mu_to_hu(clean)))
    after = float(psnr_hu(mu_to_hu(prior.prox(noisy, sigma_mu)), mu_to_hu(clean)))
    assert after > before + 3


def test_the_jacobian_estimate_is_the_largest_eigenvalue_of_the_image_denoiser():
    from ctpnp.priors.gmm import GMMPatchPrior, PatchGMM
    from ctpnp.train.gmm import largest_jacobian_eigenvalue

    gen = torch.Generator().manual_seed(0)
    factors = 0.02 * torch.randn(3, 16, 16, generator=gen, dtype=torch.float64)
    cov = factors @ factors.transpose(1, 2) + 1e-4 * torch.eye(16, dtype=torch.float64)
    means = 0.5 + 0.05 * torch.randn(3, 16, generator=gen, dtype=torch.float64)
    gmm = PatchGMM.from_covariances(means, cov, torch.full((3,), -1.0986, dtype=torch.float64),
                                    6)
    prior = GMMPatchPrior(gmm, 2, 0.025)
    u = 0.5 + 0.05 * torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    sigma = torch.tensor([0.02, 0.04], dtype=torch.float64)
    estimate = largest_jacobian_eigenvalue(prior, u, sigma, n_iter=300)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda x, i=i: prior.denoise_unit(x, sigma[i:i + 1])[0], u[i:i + 1]).reshape(36, 36)
        exact = torch.linalg.eigvalsh(jac)
        torch.testing.assert_close(jac, jac.T, rtol=1e-8, atol=1e-10)
        assert exact.min() > 0
        torch.testing.assert_close(estimate[i], exact.max(), rtol=1e-4, atol=1e-8)


def test_the_validation_log_likelihood_is_the_mixture_density_of_the_clean_patches():
    """The card's log-likelihood is the patches' density (the prior's own terms count from
    its peak bound)."""
    torch.manual_seed(0)
    d = 16
    factors = 0.02 * torch.randn(3, d, d, dtype=torch.float64)
    gmm = PatchGMM.from_covariances(0.5 + 0.1 * torch.randn(3, d, dtype=torch.float64),
                                    factors @ factors.transpose(1, 2)
                                    + 1e-3 * torch.eye(d, dtype=torch.float64),
                                    torch.log_softmax(torch.randn(3, dtype=torch.float64), 0), d)
    prior = GMMPatchPrior(gmm, 4, 0.05)
    clean = gmm.means[0].reshape(1, 1, 4, 4).repeat(2, 1, 2, 2)  # patches on the grid
    clean = clean + 0.01 * torch.randn(clean.shape, dtype=torch.float64)
    card = validate_gmm(prior, clean, torch.full((2,), 0.05, dtype=torch.float64))
    patches = torch.nn.functional.unfold(clean, 4, stride=4).transpose(1, 2).reshape(-1, d)
    expected = -patch_posterior(gmm, patches, 0.0)[1].mean()
    assert card["val_loglik_nats"] == pytest.approx(float(expected), abs=2e-3)


def test_joined_mixtures_are_the_share_weighted_sum_of_their_parts(tmp_path):
    from ctpnp.train.gmm import join_mixtures

    real = fit_patch_gmm(CONFIG, tmp_path / "a.safetensors")
    other = fit_patch_gmm(GMMTrainConfig(**{**CONFIG.__dict__, "components": 4,
                                            "train_seeds": (2, 3)}), tmp_path / "b.safetensors")
    union = load(join_mixtures([(real, 0.3), (other, 0.7)], tmp_path / "u.safetensors", CONFIG))
    a, b = load(real), load(other)
    patches = torch.rand(50, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def nll(prior):
        return patch_posterior(prior.gmm.to("cpu", torch.float64), patches, 1e-4)[1]

    expected = -torch.logsumexp(torch.stack([-nll(a) + math.log(0.3),
                                             -nll(b) + math.log(0.7)]), 0)
    # float64 rounding of ~60-nat sums (eigen-decompositions, summation order) reaches
    # 4e-9 relative on some runs; a wrong share moves a patch by ~0.1-1 nat
    torch.testing.assert_close(nll(union), expected, rtol=1e-7, atol=1e-6)
    card = union.card
    assert card["architecture"]["components"] == 10
    assert [p["share"] for p in card["training"]["parts"]] == [0.3, 0.7]
    assert card["data"]["train_seeds"] == [0, 1, 2, 3]
    assert card["validation"]["val_psnr_db"] > card["validation"]["val_noisy_psnr_db"] + 3
    coarse = fit_patch_gmm(GMMTrainConfig(**{**CONFIG.__dict__, "patch_size": 2, "rank": 4}),
                           tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match=r"c\.safetensors has patch size"):
        join_mixtures([(real, 0.5), (coarse, 0.5)], tmp_path / "x.safetensors", CONFIG)
    with pytest.raises(ValueError, match="sum to 1"):
        join_mixtures([(real, 0.5), (other, 0.6)], tmp_path / "x.safetensors", CONFIG)
    assert not (tmp_path / "x.safetensors").exists()
