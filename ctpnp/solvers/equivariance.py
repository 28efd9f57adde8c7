"""Apply a prior under the flips and quarter turns of the square (dihedral group D4).

Under prior mismatch, a denoiser trained on other data is not equivariant to
these symmetries; applying it under a random one at each iteration (or
averaging over all eight) reduces the error it causes in PnP-PGD.
"""

from __future__ import annotations

from typing import Literal

import torch

Mode = Literal["random", "average"]


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0..7) of D4 on ``(..., H, W)``: ``k % 4`` quarter turns, then a flip."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def _inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    y = torch.flip(x, dims=(-1,)) if k >= 4 else x
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


class EquivariantDenoiser:
    """``x -> T^-1 D(T x)`` for a random or every ``T`` in D4.

    Args:
        prior: anything with ``prox(x, sigma)``.
        mode: ``"random"`` (one random transform per call, seeded) or
            ``"average"`` (mean over all eight; 8 prior calls).
        seed: seed of the random transforms.
    """

    def __init__(self, prior, mode: Mode = "random", seed: int = 0) -> None:
        if mode not in ("random", "average"):
            raise ValueError(f"mode={mode!r}: expected 'random' or 'average'")
        self.prior = prior
        self.mode = mode
        self._generator = torch.Generator().manual_seed(seed)

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoised ``(B, 1, H, W)``; non-square images use the four flips/half turns only."""
        if self.mode == "average":
            return self.outputs(x, sigma).mean(dim=0)
        choices = _group(x)
        k = choices[int(torch.randint(len(choices), (1,), generator=self._generator))]
        return _inverse(self.prior.prox(_transform(x, k), sigma), k)

    def outputs(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``T^-1 D(T x)`` for every ``T`` of the group: ``(8 or 4, B, 1, H, W)``."""
        return torch.stack([_inverse(self.prior.prox(_transform(x, k), sigma), k)
                            for k in _group(x)])


def _group(x: torch.Tensor) -> list[int]:
    """The elements of D4 that keep ``x``'s shape: all eight for square images."""
    return list(range(8)) if x.shape[-1] == x.shape[-2] else [0, 2, 4, 6]
