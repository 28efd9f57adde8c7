"""BM3D prior: denoises mu images, per-image noise levels, registry name, prox-only in PGD."""

import pytest
import torch

from ctpnp import ScanGeometry, Tomography, phantoms, physics
from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu
from ctpnp.priors import BM3DPrior, HasPotential, Prior, load
from ctpnp.solvers import pnp_pgd
from ctpnp.train.data import piecewise_smooth_hu

pytest.importorskip("bm3d")


def _psnr(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image, peak = mu of +1000 HU above air."""
    mse = (a - ref).pow(2).flatten(1).mean(1)
    return 10 * torch.log10((2 * MU_WATER_PER_MM) ** 2 / mse)


def test_bm3d_denoises_a_batch_with_per_image_sigma():
    clean = hu_to_mu(torch.as_tensor(piecewise_smooth_hu(4, 64))[None, None]).repeat(2, 1, 1, 1)
    sigma_hu = torch.tensor([30.0, 120.0])
    sigma = sigma_hu / 1000.0 * MU_WATER_PER_MM
    g = torch.Generator().manual_seed(0)
    noisy = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g)
    prior = load("bm3d")
    assert isinstance(prior, BM3DPrior)
    out = prior.prox(noisy, sigma)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    gain = _psnr(out, clean) - _psnr(noisy, clean)
    assert (gain > 3.0).all(), gain
    # the per-image sigma is used: image 1 denoised at image 0's level keeps more noise
    weak = prior.prox(noisy[1:], sigma[0])
    assert _psnr(weak, clean[1:]) < _psnr(out[1:], clean[1:]) - 1.0


def test_pnp_pgd_with_bm3d_runs_a_fixed_step_without_a_potential():
    """BM3D is a prior (prox) without a potential: PGD must not ask it for one (it raised
    NotImplementedError when ``Prior`` made ``potential`` mandatory)."""
    prior = load("bm3d")
    assert isinstance(prior, Prior) and not isinstance(prior, HasPotential)
    geometry = ScanGeometry.clinical_fan((48, 48), 4.0, 90)
    op = Tomography(geometry)
    phantom = phantoms.load("water_inserts")
    clean = torch.from_numpy(phantom.project(geometry))[None, None]
    y = physics.simulate_low_dose(clean, 1e4, seed=0)
    result = pnp_pgd(y, op, prior, max_iter=3, rtol=0)
    assert result.ok and int(result.n_iter[0]) == 3
    assert "objective" not in result.history  # no backtracking without a potential
    start = op.fbp(y, filter="hann").clamp_min(0)
    assert float((result.x - start).abs().max()) > 0  # the denoiser acted
