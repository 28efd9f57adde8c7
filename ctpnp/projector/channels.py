"""Linear resampling of sinograms along the detector channel axis.

ASTRA's 2D projectors know flat detectors only. A curved (cylindrical,
focus-centred) detector is served by a virtual flat detector on the same fan:
rays are computed on the flat detector and interpolated to the curved
channels' fan angles. The interpolation is a sparse matrix ``R`` with two
entries per row, so ``apply`` and ``adjoint`` form an exact adjoint pair and
the composed operator ``R A`` keeps ``<R A x, y> = <x, A^T R^T y>``.
"""

from __future__ import annotations

import numpy as np
import torch


class ChannelResampler:
    """Linear interpolation from one channel grid to other positions.

    Args:
        source_positions: ``(S,)`` increasing, uniformly spaced sample positions.
        target_positions: ``(T,)`` positions to interpolate at; positions outside
            the source grid get zero (no extrapolation).
        device: torch device of the sinograms it will act on.
    """

    def __init__(
        self,
        source_positions: np.ndarray,
        target_positions: np.ndarray,
        device: torch.device,
    ) -> None:
        source = np.asarray(source_positions, dtype=np.float64)
        target = np.asarray(target_positions, dtype=np.float64)
        step = source[1] - source[0]
        fractional = (target - source[0]) / step
        left = np.clip(np.floor(fractional), 0, source.size - 2).astype(np.int64)
        weight_right = fractional - left
        inside = (fractional >= -1e-9) & (fractional <= source.size - 1 + 1e-9)
        self.n_source = source.size
        self._left = torch.as_tensor(left, device=device)
        self._right = self._left + 1
        self._weight_right = torch.as_tensor(np.where(inside, weight_right, 0.0),
                                             dtype=torch.float32, device=device)
        self._weight_left = torch.as_tensor(np.where(inside, 1.0 - weight_right, 0.0),
                                            dtype=torch.float32, device=device)

    def apply(self, sinogram: torch.Tensor) -> torch.Tensor:
        """``(..., S)`` on the source grid → ``(..., T)`` at the target positions."""
        return (sinogram.index_select(-1, self._left) * self._weight_left
                + sinogram.index_select(-1, self._right) * self._weight_right)

    def adjoint(self, sinogram: torch.Tensor) -> torch.Tensor:
        """``(..., T)`` → ``(..., S)``: the transpose of :meth:`apply`."""
        out = sinogram.new_zeros((*sinogram.shape[:-1], self.n_source))
        out.index_add_(-1, self._left, sinogram * self._weight_left)
        out.index_add_(-1, self._right, sinogram * self._weight_right)
        return out
