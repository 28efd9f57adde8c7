"""A DRUNet-like residual U-Net with a noise-level input channel and softplus activations.

It computes a residual ``R(u, sigma)`` for normalized-intensity images ``u``
``(B, 1, H, W)`` and noise std ``sigma`` (normalized units, ``(B,)``); the
Prox-denoiser uses ``N(u) = u - R(u, sigma)``. Softplus keeps the network
twice differentiable, which the Hessian penalty of the Prox-denoiser needs.

Scales: with ``unshuffle = f > 1`` the image and its noise-level channel are
first rearranged into ``f**2`` sub-images of ``1/f`` the size (space to depth,
as in FFDNet) and the output is put back the same way: every layer then costs
``f**2`` times less, at the price of a coarser first scale. Then
``len(channels)`` resolutions, each halving the previous one with a
stride-2 convolution and coming back with a transposed one; every scale holds
``blocks`` residual blocks on the way down and on the way up, the coarsest
``blocks`` in its bottleneck. Any ``H, W`` work: sizes are padded (replicate)
to a multiple of ``unshuffle * 2**(scales - 1)`` inside the network and cropped back, so
the map ``u -> R`` is a fixed smooth function of ``u``.

Intensity scaling: the network sees ``x = (u - intensity_offset) *
intensity_scale`` and returns ``R = R'(x) / intensity_scale``. Then
``g(u) = 1/2 ||R(u)||^2 = g'(x) / s^2``, ``grad_u g = grad g'(x) / s`` and the
Hessian of ``g`` equals that of ``g'``: the denoiser is the scaled network's
denoiser applied in the scaled unit, so scaling changes what the weights see
(soft-tissue contrast of order 1 instead of 0.01) but none of the Prox
guarantees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SmallUNet", "UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`SmallUNet`.

    Attributes:
        channels: feature channels per scale, finest first (``len`` = number of scales).
        blocks: residual blocks per scale (encoder, bottleneck, decoder).
        sigma_scale: the noise-level channel holds ``sigma_unit * sigma_scale``
            (brings the normalized noise std, ~0.005--0.075, to order 1).
        intensity_offset: normalized intensity subtracted before the network
            (0.5 is water, 0 HU).
        intensity_scale: factor applied after the offset (10 maps 200 HU to 1).
        unshuffle: space-to-depth factor before the first scale (1: none).
    """

    channels: tuple[int, ...] = (16, 32)
    blocks: int = 1
    sigma_scale: float = 20.0
    intensity_offset: float = 0.0
    intensity_scale: float = 1.0
    unshuffle: int = 1

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or min(self.channels) < 1 or self.blocks < 1:
            raise ValueError(f"the U-Net needs >= 2 scales of >= 1 channel and >= 1 block: {self}")
        if self.unshuffle < 1:
            raise ValueError(f"unshuffle must be >= 1, got {self.unshuffle}")
        if self.intensity_scale <= 0:
            raise ValueError(f"intensity_scale must be positive, got {self.intensity_scale}")

    @property
    def multiple(self) -> int:
        """Image sides are padded to a multiple of this (``unshuffle * 2**(scales - 1)``)."""
        return self.unshuffle * 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict` (cards written before a field existed get its default)."""
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate")


class _ResBlock(nn.Module):
    """``x + conv(softplus(conv(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels), nn.Softplus(), _conv(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _blocks(channels: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(_ResBlock(channels) for _ in range(n)))


def _build_scale(module: nn.Module, channels: tuple[int, ...], blocks: int) -> None:
    """Give ``module`` the layers of one scale: ``encoder, down, bottleneck, up, decoder``.

    ``bottleneck`` is the next coarser scale (built the same way) or, at the
    coarsest, residual blocks. The names are those of the two-scale network
    the first shipped weights were saved from.
    """
    c, c_next = channels[0], channels[1]
    module.encoder = _blocks(c, blocks)
    module.down = nn.Sequential(nn.Conv2d(c, c_next, 2, stride=2), nn.Softplus())
    module.bottleneck = (
        _Scale(channels[1:], blocks) if len(channels) > 2 else _blocks(c_next, blocks)
    )
    module.up = nn.ConvTranspose2d(c_next, c, 2, stride=2)
    module.decoder = _blocks(c, blocks)


def _scale_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    skip = module.encoder(x)
    return module.decoder(module.up(module.bottleneck(module.down(skip))) + skip)


class _Scale(nn.Module):
    """One inner resolution of the U-Net (see :func:`_build_scale`)."""

    def __init__(self, channels: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        _build_scale(self, channels, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _scale_forward(self, x)


class SmallUNet(nn.Module):
    """Residual ``R(u, sigma)``: ``(B, 1, H, W)``, ``(B,)`` -> ``(B, 1, H, W)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        f2 = config.unshuffle**2
        self.head = _conv(2 * f2, config.channels[0])
        _build_scale(self, config.channels, config.blocks)
        self.tail = _conv(config.channels[0], f2)

    def forward(self, u: torch.Tensor, sigma_unit: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        h, w = u.shape[-2:]
        pad_h, pad_w = -h % cfg.multiple, -w % cfg.multiple
        x = (u - cfg.intensity_offset) * cfg.intensity_scale
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        level = sigma_unit.reshape(-1, 1, 1, 1).to(x) * cfg.sigma_scale
        x = F.pixel_unshuffle(torch.cat([x, level.expand_as(x)], dim=1), cfg.unshuffle)
        r = F.pixel_shuffle(self.tail(_scale_forward(self, self.head(x))), cfg.unshuffle)
        return r[..., :h, :w] / cfg.intensity_scale
