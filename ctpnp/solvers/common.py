"""Set-up shared by the solvers: starting image, denoiser wrapping, constraints."""

from __future__ import annotations

import torch

from ctpnp.physics import estimate_noise_variance
from ctpnp.priors.base import Prior
from ctpnp.projector import Tomography
from ctpnp.solvers.equivariance import EquivariantDenoiser, Mode
from ctpnp.solvers.parameters import PnPParameters, learned_parameters


def initial_image(op: Tomography, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    """``x0`` when given, else the Hann-filtered FBP of ``y`` clipped to μ ≥ 0."""
    if x0 is not None:
        op._check(x0, op.image_shape, "x0")
        return x0.detach().clone()
    return op.fbp(y, filter="hann").clamp_min(0.0)


def denoiser(prior, equivariant: bool | Mode, seed: int):
    """The prior itself, or wrapped to act under D4 transforms (``True`` means ``"random"``)."""
    if not isinstance(prior, Prior):
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


def pnp_settings(
    prior,
    solver: str,
    y: torch.Tensor,
    sigma_mu_per_mm: float | torch.Tensor | None,
    data_weight: float | torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoiser strength and data weight of each item: given, learned, or the untrained rule.

    What is not given comes from the dose rule stored for ``solver`` in the
    prior's model card (:func:`~ctpnp.solvers.parameters.learned_parameters`),
    else from the untrained rule (``sigma = 0.002/mm``, ``data_weight = 1/v``);
    both follow the noise variance ``v`` estimated from ``y``
    (:func:`ctpnp.physics.estimate_noise_variance`), so defaults follow the dose.

    Returns:
        ``sigma_mu_per_mm`` ``(B,)`` float32 (1/mm) and ``data_weight`` ``(B,)``
        float64 (dimensionless), both on the CPU.
    """
    batch = y.shape[0]
    variance = estimate_noise_variance(y).cpu().double().clamp_min(1e-12)
    rule = learned_parameters(prior, solver) or PnPParameters()
    sigma, weight = rule.settings(variance)
    if sigma_mu_per_mm is not None:
        sigma = _positive("sigma_mu_per_mm", sigma_mu_per_mm, batch).float()
    if data_weight is not None:
        weight = _positive("data_weight", data_weight, batch)
    return sigma, weight


def _positive(name: str, value: float | torch.Tensor, batch: int) -> torch.Tensor:
    """``value`` as a ``(B,)`` float64 CPU tensor, checked positive and finite."""
    tensor = torch.as_tensor(value, dtype=torch.float64).detach().cpu().expand(batch).clone()
    if bool((tensor <= 0).any()) or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return tensor
