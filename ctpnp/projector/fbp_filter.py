"""Ramp filtering of sinograms for filtered back-projection.

The ramp is the spatial-domain discretization of Kak & Slaney (1988, eq. 61):
``h[0] = 1 / (4 du^2)``, ``h[n] = -1 / (pi n du)^2`` for odd ``n``, 0 for even
``n``, applied by FFT with zero padding to at least twice the channel count.
Sampling the continuous ramp ``|f|`` directly on the FFT grid instead (as ODL's
``fbp_op`` does) sets the DC gain to zero and shifts reconstructions by a
constant of several HU; this kernel does not.
"""

from __future__ import annotations

import math

import torch

WINDOWS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")


def _window(name: str, nu: torch.Tensor, frequency_scaling: float) -> torch.Tensor:
    """Apodization at normalized frequency ``nu`` (1 = Nyquist), zero above the cut-off."""
    s = frequency_scaling
    if name == "ram-lak":
        w = torch.ones_like(nu)
    elif name == "shepp-logan":
        w = torch.sinc(nu / (2 * s))
    elif name == "cosine":
        w = torch.cos(math.pi * nu / (2 * s))
    elif name == "hamming":
        w = 0.54 + 0.46 * torch.cos(math.pi * nu / s)
    elif name == "hann":
        w = torch.cos(math.pi * nu / (2 * s)) ** 2
    else:
        raise ValueError(f"filter={name!r} is unknown: expected one of {list(WINDOWS)}")
    return torch.where(nu <= s, w, torch.zeros_like(w))


def ramp_response(n_channels: int, spacing_mm: float, window: str, frequency_scaling: float,
                  device: torch.device) -> tuple[torch.Tensor, int]:
    """Frequency response of the windowed ramp and the padded length it applies to.

    Returns:
        ``(response, padded_length)``: ``response`` is ``(padded_length // 2 + 1,)``
        float32, in 1/mm² times mm (it includes the convolution's ``du``).
    """
    padded = 1 << math.ceil(math.log2(2 * n_channels))
    n = torch.arange(padded, dtype=torch.float64)
    n = torch.where(n < padded // 2, n, n - padded)
    kernel = torch.where(n.remainder(2) == 1, -1.0 / (math.pi * n * spacing_mm) ** 2,
                         torch.zeros_like(n))
    kernel[0] = 1.0 / (4 * spacing_mm**2)
    response = torch.fft.rfft(kernel).real * spacing_mm
    nu = torch.arange(response.numel(), dtype=torch.float64) / (padded // 2)
    response = response * _window(window, nu, frequency_scaling)
    return response.to(device=device, dtype=torch.float32), padded


def ramp_filter(sinograms: torch.Tensor, response: torch.Tensor, padded_length: int
                ) -> torch.Tensor:
    """Filter ``(..., channels)`` along the last axis with a :func:`ramp_response`."""
    n_channels = sinograms.shape[-1]
    spectrum = torch.fft.rfft(sinograms, n=padded_length, dim=-1)
    return torch.fft.irfft(spectrum * response, n=padded_length, dim=-1)[..., :n_channels]
