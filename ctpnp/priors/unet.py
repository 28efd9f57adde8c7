"""A small two-scale DRUNet-like U-Net with a noise-level input channel and softplus activations.

It computes a residual ``R(u, sigma)`` for normalized-intensity images ``u``
``(B, 1, H, W)`` and noise std ``sigma`` (normalized units, ``(B,)``); the
Prox-denoiser uses ``N(u) = u - R(u, sigma)``. Softplus keeps the network
twice differentiable, which the Hessian penalty of the Prox-denoiser needs.
Any ``H, W`` work: odd sizes are padded (replicate) to even inside the network
and cropped back, so the map ``u -> R`` is a fixed smooth function of ``u``.
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
        channels: feature channels at full and half resolution.
        blocks: residual blocks per scale (encoder, bottleneck, decoder).
        sigma_scale: the noise-level channel holds ``sigma_unit * sigma_scale``
            (brings the normalized noise std, ~0.005--0.075, to order 1).
    """

    channels: tuple[int, int] = (16, 32)
    blocks: int = 1
    sigma_scale: float = 20.0

    def to_dict(self) -> dict:
        """JSON-ready dictionary (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict`."""
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


class SmallUNet(nn.Module):
    """Residual ``R(u, sigma)``: ``(B, 1, H, W)``, ``(B,)`` -> ``(B, 1, H, W)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        c1, c2 = config.channels
        self.config = config
        self.head = _conv(2, c1)
        self.encoder = nn.Sequential(*(_ResBlock(c1) for _ in range(config.blocks)))
        self.down = nn.Sequential(nn.Conv2d(c1, c2, 2, stride=2), nn.Softplus())
        self.bottleneck = nn.Sequential(*(_ResBlock(c2) for _ in range(config.blocks)))
        self.up = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.decoder = nn.Sequential(*(_ResBlock(c1) for _ in range(config.blocks)))
        self.tail = _conv(c1, 1)

    def forward(self, u: torch.Tensor, sigma_unit: torch.Tensor) -> torch.Tensor:
        h, w = u.shape[-2:]
        x = F.pad(u, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else u
        level = sigma_unit.reshape(-1, 1, 1, 1).to(x) * self.config.sigma_scale
        x = torch.cat([x, level.expand_as(x)], dim=1)
        skip = self.encoder(self.head(x))
        y = self.decoder(self.up(self.bottleneck(self.down(skip))) + skip)
        return self.tail(y)[..., :h, :w]
