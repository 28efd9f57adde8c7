"""Input-convex neural network (ICNN) on square patches: the scalar potential of an LPN.

``psi(x)`` is convex in ``x`` because

* the convex path ``z_{k+1} = softplus(W_k z_k + S_k(x) + b_k)`` uses only
  non-negative weights ``W_k`` (enforced by :meth:`PatchICNN.clamp_weights`,
  which the trainer calls after every optimizer step) and a convex,
  non-decreasing activation (softplus);
* the "skip" maps ``S_k`` from the input into each layer are unconstrained, but
  linear in ``x`` (a convolution of an average-pooled copy of the patch);
* the read-out is a mean over pixels, a non-negative convolution and a linear
  layer with non-negative weights.

Shapes: input ``(N, 1, p, p)`` patches of normalized intensity, output ``(N,)``.
A patch size of 1 with ``kernel_size=1`` and no downsampling gives a plain
fully connected ICNN on scalars (used for the 1D soft-thresholding check).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ICNNConfig", "PatchICNN"]


@dataclass(frozen=True)
class ICNNConfig:
    """Architecture hyper-parameters of :class:`PatchICNN`.

    Attributes:
        patch_size: side ``p`` of the square input patch (pixels).
        channels: hidden channels of every convex layer.
        strides: stride of each convex layer after the first (1 or 2); the
            product must divide ``patch_size``.
        kernel_size: odd convolution kernel size.
        out_channels: channels of the last (non-negative) convolution.
        softplus_beta: sharpness ``beta`` of ``softplus(t) = log(1 + e^{beta t}) / beta``.
        init_log_mean: convex-path weights start at ``exp(N(init_log_mean, init_log_std))``.
        init_log_std: see ``init_log_mean``.
    """

    patch_size: int = 32
    channels: int = 32
    strides: tuple[int, ...] = (2, 1, 2)
    kernel_size: int = 3
    out_channels: int = 32
    softplus_beta: float = 20.0
    init_log_mean: float = -6.0
    init_log_std: float = 0.1

    def __post_init__(self) -> None:
        down = 1
        for s in self.strides:
            if s not in (1, 2):
                raise ValueError(f"strides must be 1 or 2, got {self.strides}")
            down *= s
        if self.patch_size % down:
            raise ValueError(f"patch_size {self.patch_size} not divisible by total stride {down}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tuples become lists)."""
        d = asdict(self)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ICNNConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        d = dict(d)
        d["strides"] = tuple(d.get("strides", cls.strides))
        return cls(**d)


class PatchICNN(nn.Module):
    """Convex scalar potential ``psi: (N, 1, p, p) -> (N,)`` (without the quadratic term)."""

    def __init__(self, config: ICNNConfig) -> None:
        super().__init__()
        self.config = config
        c, k = config.channels, config.kernel_size
        pad = k // 2
        self.skip0 = nn.Conv2d(1, c, k, padding=pad)
        self.convex = nn.ModuleList(
            nn.Conv2d(c, c, k, stride=s, padding=pad, bias=False) for s in config.strides
        )
        self.skips = nn.ModuleList(nn.Conv2d(1, c, k, padding=pad) for _ in config.strides)
        self.convex_out = nn.Conv2d(c, config.out_channels, k, padding=pad, bias=False)
        self.skip_out = nn.Conv2d(1, config.out_channels, k, padding=pad)
        self.readout = nn.Linear(config.out_channels, 1)
        self._init_convex_weights()

    def _constrained(self) -> list[torch.Tensor]:
        return [m.weight for m in self.convex] + [self.convex_out.weight, self.readout.weight]

    def _init_convex_weights(self) -> None:
        with torch.no_grad():
            for w in self._constrained():
                w.normal_(self.config.init_log_mean, self.config.init_log_std).exp_()

    def clamp_weights(self) -> None:
        """Project the convex-path weights onto ``>= 0`` (call after every optimizer step)."""
        with torch.no_grad():
            for w in self._constrained():
                w.clamp_(min=0.0)

    def _act(self, t: torch.Tensor) -> torch.Tensor:
        return F.softplus(t, beta=self.config.softplus_beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``psi(x)`` for patches ``x`` of shape ``(N, 1, p, p)``; returns ``(N,)``."""
        z = self._act(self.skip0(x))
        down, x_down = 1, x
        for conv, skip, s in zip(self.convex, self.skips, self.config.strides, strict=True):
            down *= s
            x_down = F.avg_pool2d(x, down) if down > 1 else x
            z = self._act(conv(z) + skip(x_down))
        z = self._act(self.convex_out(z) + self.skip_out(x_down))
        return self.readout(z.mean(dim=(2, 3))).squeeze(1)
