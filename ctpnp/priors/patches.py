"""Uniform-coverage patch tiling: the linear map from an image to its overlapping patches.

An ``(H, W)`` image is padded with a constant, then cut into ``p x p`` patches
at stride ``s`` (``p % s == 0``) so that **every image pixel lies in exactly**
``coverage = (p / s)**2`` **patches**:

* ``p - s`` pixels of padding on the top/left, and ``p - s`` plus what rounds
  ``H`` (``W``) up to a multiple of ``s`` on the bottom/right;
* the padding value is a constant (``pad_value``, for CT images normalized to
  the HU window it is 0 = air, what surrounds a patient). The padded image is
  an *affine* function of the image, so ``Phi(x) = sum_k psi(patch_k(x)) /
  coverage`` is convex whenever ``psi`` is, and its gradient
  ``grad Phi(x) = crop(fold(grad psi(patches))) / coverage`` is an exact
  proximal operator. (Reflect padding would be linear too, but it would count
  border pixels several times, so ``grad Phi`` would not stay close to the
  identity there; circular padding would glue opposite image edges together.)

Shapes: images ``(B, 1, H, W)``; patches ``(B * L, 1, p, p)``, ordered image by
image, then row-major over the patch grid of ``L = Lh * Lw`` positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["PatchTiling"]


@dataclass(frozen=True)
class PatchTiling:
    """Patches of size ``patch_size`` at ``stride`` with uniform coverage (see module doc)."""

    patch_size: int
    stride: int
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        if self.stride < 1 or self.patch_size % self.stride:
            raise ValueError(
                f"patch_size {self.patch_size} must be a multiple of stride {self.stride}"
            )

    @property
    def coverage(self) -> int:
        """Number of patches that contain each image pixel."""
        return (self.patch_size // self.stride) ** 2

    def _pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` padding in pixels for an ``(h, w)`` image."""
        m = self.patch_size - self.stride
        return (m, m + (-w) % self.stride, m, m + (-h) % self.stride)

    def grid(self, h: int, w: int) -> tuple[int, int]:
        """``(Lh, Lw)``: patch positions along rows and columns for an ``(h, w)`` image."""
        left, right, top, bottom = self._pads(h, w)
        p, s = self.patch_size, self.stride
        return ((h + top + bottom - p) // s + 1, (w + left + right - p) // s + 1)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Patches of ``x`` ``(B, 1, H, W)`` -> ``(B * L, 1, p, p)`` (differentiable)."""
        h, w = x.shape[-2:]
        p = self.patch_size
        padded = F.pad(x, self._pads(h, w), mode="constant", value=self.pad_value)
        cols = F.unfold(padded, p, stride=self.stride)  # (B, p*p, L)
        return cols.transpose(1, 2).reshape(-1, 1, p, p)

    def adjoint_mean(self, patches: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """Sum patches back into ``(B, 1, H, W)`` (adjoint of :meth:`extract`) / ``coverage``.

        This is the chain rule through :meth:`extract`: the gradient of
        ``sum_k psi(patch_k(x)) / coverage`` is ``adjoint_mean(grad psi(patches))``.
        """
        p = self.patch_size
        left, right, top, bottom = self._pads(h, w)
        cols = patches.reshape(b, -1, p * p).transpose(1, 2)
        size = (h + top + bottom, w + left + right)
        padded = F.fold(cols, size, p, stride=self.stride)
        return padded[..., top : top + h, left : left + w] / self.coverage

    def patch_map(self, values: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """Spread one value per patch ``(B * L,)`` onto pixels: mean over covering patches.

        Returns ``(B, 1, H, W)``; each pixel holds the average of the values of
        the ``coverage`` patches that contain it.
        """
        p = self.patch_size
        per_pixel = values.reshape(-1, 1, 1, 1).expand(-1, 1, p, p)
        return self.adjoint_mean(per_pixel, b, h, w)
