"""The reference paper's first check: an LPN trained by proximal matching on 1D Laplacian data
approaches soft-thresholding (the prox of the l1 norm, i.e. the MAP denoiser)."""

import pytest
import torch

from ctpnp.priors import LPN
from ctpnp.priors.icnn import ICNNConfig
from ctpnp.train.losses import l1_loss, proximal_matching_loss

SIGMA = 1.0  # Gaussian noise std; Laplace scale 1 -> MAP threshold SIGMA**2 / 1 = 1


def _soft(y, threshold):
    return torch.sign(y) * (y.abs() - threshold).clamp(min=0)


@pytest.mark.slow
def test_scalar_lpn_approaches_soft_thresholding():
    torch.manual_seed(0)
    cfg = ICNNConfig(patch_size=1, channels=64, strides=(1,), kernel_size=1, out_channels=64,
                     softplus_beta=10.0, init_log_mean=-3.0)
    net = LPN(cfg, alpha=1e-3).train()
    opt = torch.optim.Adam(net.parameters())
    laplace = torch.distributions.Laplace(0.0, 1.0)
    # L1 warm-up, then proximal matching with a shrinking width gamma.
    schedule = [(None, 300, 1e-2), (1.0, 300, 3e-3), (0.5, 300, 1e-3), (0.25, 400, 1e-3)]
    for gamma, steps, lr in schedule:
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(steps):
            x = laplace.sample((2048, 1, 1, 1))
            pred = net(x + SIGMA * torch.randn_like(x))
            loss = l1_loss(pred, x) if gamma is None else proximal_matching_loss(pred, x, gamma)
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.clamp_weights()
    y = torch.linspace(-3, 3, 61).reshape(-1, 1, 1, 1)
    f = net(y, create_graph=False)
    err = (f - _soft(y, SIGMA**2)).abs()
    assert err.mean() < 0.15
    assert err.mean() < 0.25 * (y - _soft(y, SIGMA**2)).abs().mean()  # far closer than identity
    assert f[y.abs() <= 0.6].abs().max() < 0.3  # the dead zone of the threshold
    assert torch.all(f[1:] >= f[:-1] - 1e-6)  # monotone, as a prox of a convex function must be
