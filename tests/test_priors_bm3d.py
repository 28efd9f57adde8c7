"""BM3D prior: denoises mu images, per-image noise levels, registry name."""

import pytest
import torch

from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu
from ctpnp.priors import BM3DPrior, load
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


def test_bm3d_has_no_potential():
    with pytest.raises(NotImplementedError):
        BM3DPrior().potential(torch.zeros(1, 1, 8, 8))
