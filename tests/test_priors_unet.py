"""The residual U-Net of the Prox-denoiser: scales, space-to-depth and intensity scaling."""

import pytest
import torch

from ctpnp.priors.prox_denoiser import GradientStepDenoiser, hessian_spectral_norm
from ctpnp.priors.unet import SmallUNet, UNetConfig


def _pair(config: UNetConfig, **changes) -> tuple[SmallUNet, SmallUNet]:
    torch.manual_seed(0)
    a = SmallUNet(config)
    b = SmallUNet(UNetConfig(**{**config.to_dict(), "channels": config.channels, **changes}))
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("channels,unshuffle", [((4, 8), 1), ((4, 8, 16), 2), ((4, 8, 8, 16), 1)])
@pytest.mark.parametrize("shape", [(32, 32), (37, 50)])
def test_any_image_size_keeps_its_shape(channels, unshuffle, shape):
    """Padding to the network's multiple is cropped back."""
    net = SmallUNet(UNetConfig(channels=channels, unshuffle=unshuffle)).double()
    u = torch.rand(1, 1, 64, 64, dtype=torch.float64).expand(2, 1, 64, 64)
    sigma = torch.tensor([0.01, 0.05], dtype=torch.float64)
    out = net(u[..., : shape[0], : shape[1]], sigma)
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # same image, two noise levels


def test_intensity_scaling_is_the_scaled_network():
    """``R(u) = R'((u - o) s) / s`` with the same weights: only what the weights see changes."""
    base = UNetConfig(channels=(4, 8, 16), blocks=1, unshuffle=2)
    plain, scaled = _pair(base, intensity_offset=0.5, intensity_scale=10.0)
    u = torch.rand(3, 1, 24, 24, dtype=torch.float64)
    sigma = torch.full((3,), 0.02, dtype=torch.float64)
    plain, scaled = plain.double(), scaled.double()
    assert torch.allclose(scaled(u, sigma), plain((u - 0.5) * 10.0, sigma) / 10.0, atol=1e-12)


def test_intensity_scaling_leaves_the_hessian_norm_unchanged():
    """``Hess_u g = Hess_x g'`` at ``x = (u - o) s``: the Prox guarantee does not depend on s."""
    plain, scaled = _pair(UNetConfig(channels=(4, 8), blocks=1), intensity_scale=7.0)
    nets = []
    for residual in (plain, scaled):
        net = GradientStepDenoiser(residual.config).double()
        net.residual.load_state_dict(residual.state_dict())
        nets.append(net)
    u = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    sigma = torch.full((2,), 0.03, dtype=torch.float64)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    h_plain = hessian_spectral_norm(nets[0], u * 7.0, sigma, 40, generator=gen())
    h_scaled = hessian_spectral_norm(nets[1], u, sigma, 40, generator=gen())
    assert torch.allclose(h_plain, h_scaled, rtol=1e-6)


def test_bad_architectures_are_refused():
    for bad in ({"channels": (8,)}, {"blocks": 0}, {"unshuffle": 0}, {"intensity_scale": 0.0}):
        with pytest.raises(ValueError):
            UNetConfig(**bad)


def test_cards_written_before_the_new_fields_read_as_before():
    old = {"channels": [16, 32], "blocks": 1, "sigma_scale": 20.0}
    config = UNetConfig.from_dict(old)
    assert (config.unshuffle, config.intensity_offset, config.intensity_scale) == (1, 0.0, 1.0)
    assert UNetConfig.from_dict(config.to_dict()) == config
