"""Set-up shared by the solvers: starting image, denoiser wrapping, constraints."""

from __future__ import annotations

import torch

from ctpnp.physics import estimate_noise_variance
from ctpnp.projector import Tomography
from ctpnp.solvers.equivariance import EquivariantDenoiser, Mode


def initial_image(op: Tomography, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    """``x0`` when given, else the Hann-filtered FBP of ``y`` clipped to μ ≥ 0."""
    if x0 is not None:
        op._check(x0, op.image_shape, "x0")
        return x0.detach().clone()
    return op.fbp(y, filter="hann").clamp_min(0.0)


def denoiser(prior, equivariant: bool | Mode, seed: int):
    """The prior itself, or wrapped to act under D4 transforms (``True`` means ``"random"``)."""
    if not hasattr(prior, "prox"):
        raise TypeError(f"prior: expected an object with .prox(x, sigma), got {type(prior)}")
    if equivariant is False:
        return prior
    return EquivariantDenoiser(prior, "random" if equivariant is True else equivariant, seed)


def keep_active(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` where the item is still iterating, ``old`` where it has stopped."""
    return torch.where(mask, new, old)


def nonnegative(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """μ ≥ 0 when ``enabled``."""
    return x.clamp_min(0.0) if enabled else x


def data_weight_per_item(y: torch.Tensor, data_weight: float | torch.Tensor | None
                         ) -> torch.Tensor:
    """``(B,)`` float64 weight of the misfit: given, or the inverse noise variance of ``y``.

    Estimating it from the sinogram (:func:`ctpnp.physics.estimate_noise_variance`)
    makes every default follow the dose without tuning.
    """
    if data_weight is None:
        return 1.0 / estimate_noise_variance(y).cpu().clamp_min(1e-12)
    weight = torch.as_tensor(data_weight, dtype=torch.float64).expand(y.shape[0]).clone()
    if bool((weight <= 0).any()) or not bool(torch.isfinite(weight).all()):
        raise ValueError(f"data_weight must be positive and finite, got {data_weight}")
    return weight
