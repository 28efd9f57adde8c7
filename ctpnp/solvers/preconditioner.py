"""An FFT-diagonal preconditioner for the data step ``(A^T W A + I / tau) u = b``.

``A^T A`` of a full fan-beam turn is close to a shift-invariant filter in the image
domain whose kernel falls off like ``c / r`` (a ``1 / |omega|`` response). The
preconditioner is that filter, fitted per geometry: ``A^T A`` applied to an impulse
at the image centre gives the kernel out to a quarter of the image; beyond, the
``c / r`` tail fitted on the measured ring extends it. On a grid padded to twice
the image, the filter is diagonal in the FFT, so

    P r = crop(F^-1 [F pad(r) / (K(omega) + 1 / tau)])

costs two FFTs. ``P`` is symmetric positive definite (a positive circulant
restricted to the image), so preconditioned CG solves the *same* system to the
same tolerance on its true residual: the solvers' fixed points do not change.
Statistical weights ``W`` (normalized to mean 1) are not modelled in ``P``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

from ctpnp.projector import Tomography

__all__ = ["FourierPreconditioner", "gram_spectrum", "preconditioner_for"]

MEASURED_FRACTION = 0.25
"""The kernel is taken as measured out to this fraction of the image size."""

_SPECTRA: weakref.WeakKeyDictionary[Tomography, torch.Tensor] = weakref.WeakKeyDictionary()


def gram_spectrum(op: Tomography) -> torch.Tensor:
    """``K(omega)`` ``(2H, W + 1)`` float32 on ``op.device`` (mm²): the real FFT, on the
    ``(2H, 2W)`` padded grid, of ``A^T A``'s kernel (one forward and one back-projection,
    cached per operator)."""
    if op in _SPECTRA:
        return _SPECTRA[op]
    height, width = op.image_shape
    impulse = torch.zeros((1, 1, height, width), device=op.device)
    impulse[0, 0, height // 2, width // 2] = 1.0
    with torch.no_grad():
        response = op.gram(impulse)[0, 0].double()
    rows = torch.arange(2 * height, device=op.device, dtype=torch.float64)
    cols = torch.arange(2 * width, device=op.device, dtype=torch.float64)
    dy = torch.minimum(rows, 2 * height - rows)[:, None]  # offsets on the periodic grid
    dx = torch.minimum(cols, 2 * width - cols)[None, :]
    radius = torch.hypot(dy, dx)
    measured_radius = MEASURED_FRACTION * min(height, width)
    kernel = torch.zeros((2 * height, 2 * width), device=op.device, dtype=torch.float64)
    kernel[:height, :width] = response  # the measured part, its centre moved to offset 0
    kernel = kernel.roll((-(height // 2), -(width // 2)), dims=(0, 1))
    ring = (radius > 0.5 * measured_radius) & (radius <= measured_radius)
    tail_constant = float((kernel[ring] * radius[ring]).mean())
    outside = radius > measured_radius
    kernel = torch.where(outside, tail_constant / radius.clamp_min(1.0), kernel)
    spectrum = torch.fft.rfft2(kernel).real.clamp_min(0.0).float()
    _SPECTRA[op] = spectrum
    return spectrum


class FourierPreconditioner:
    """``r -> P r`` for the systems ``(A^T W A + shift I) u = b``, one ``shift`` per item.

    Args:
        op: the forward model (its spectrum is fitted once, :func:`gram_spectrum`).
        shift: ``(B, 1, 1, 1)`` positive diagonal shift ``1 / tau`` (mm²).
    """

    def __init__(self, op: Tomography, shift: torch.Tensor) -> None:
        self.shape = op.image_shape
        self.inverse = 1.0 / (gram_spectrum(op) + shift)  # (B, 1, 2H, W + 1)

    def __call__(self, residual: torch.Tensor) -> torch.Tensor:
        """``P r`` for ``(B, 1, H, W)`` residuals."""
        height, width = self.shape
        spectrum = torch.fft.rfft2(residual, s=(2 * height, 2 * width))
        return torch.fft.irfft2(spectrum * self.inverse, s=(2 * height, 2 * width)
                                )[..., :height, :width].to(residual.dtype)


def preconditioner_for(kind: str | None, op: Tomography, shift: torch.Tensor
                       ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The preconditioner named ``kind`` (``"fourier"`` or ``None``) for shift ``(B, 1, 1, 1)``.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind is None:
        return None
    if kind != "fourier":
        raise ValueError(f"preconditioner={kind!r} is unknown: expected 'fourier' or None")
    if not bool(torch.isfinite(shift).all()) or bool((shift <= 0).any()):
        raise ValueError("the Fourier preconditioner needs a positive shift 1 / tau")
    return FourierPreconditioner(op, shift)
