"""Isotropic total variation prior with a fast-gradient-projection (FGP) prox.

Gibbs prior ``p(u) ~ exp(-R(u))`` with ``R(u) = weight * TV(u)`` on normalized
intensities ``u = mu / (2 mu_water)`` (:mod:`ctpnp.priors.normalization`),
``TV(u) = sum_pixels ||(D u)_pixel||_2`` with forward differences and
Neumann boundary (the last difference along each axis is zero).

``prox(x, sigma)`` is the MAP denoiser for Gaussian noise of std ``sigma``:
``argmin_z 1/2 ||z - x||^2 + sigma^2 R(z)`` (mu units), i.e. the TV prox of
strength ``lambda = sigma_unit^2 * weight`` in normalized units, computed by a
fixed number of FGP iterations on the dual (Beck & Teboulle, 2009).
"""

from __future__ import annotations

import torch

from ctpnp.priors.normalization import mu_to_unit, sigma_mu_to_unit, unit_to_mu

__all__ = ["TVPrior", "gradient", "gradient_adjoint", "total_variation", "tv_prox"]


def gradient(u: torch.Tensor) -> torch.Tensor:
    """Forward differences ``(B, 1, H, W)`` -> ``(B, 2, H, W)`` (rows, columns), Neumann."""
    d = torch.zeros(u.shape[0], 2, *u.shape[2:], dtype=u.dtype, device=u.device)
    d[:, 0, :-1, :] = u[:, 0, 1:, :] - u[:, 0, :-1, :]
    d[:, 1, :, :-1] = u[:, 0, :, 1:] - u[:, 0, :, :-1]
    return d


def gradient_adjoint(p: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`gradient` (minus the divergence): ``(B, 2, H, W)`` -> ``(B, 1, H, W)``."""
    out = torch.zeros(p.shape[0], 1, *p.shape[2:], dtype=p.dtype, device=p.device)
    pr, pc = p[:, 0, :-1, :], p[:, 1, :, :-1]
    out[:, 0, :-1, :] -= pr
    out[:, 0, 1:, :] += pr
    out[:, 0, :, :-1] -= pc
    out[:, 0, :, 1:] += pc
    return out


def total_variation(u: torch.Tensor) -> torch.Tensor:
    """Isotropic TV ``(B, 1, H, W)`` -> ``(B,)`` (same units as ``u``)."""
    return gradient(u).pow(2).sum(1).sqrt().flatten(1).sum(1)


def tv_prox(b: torch.Tensor, lam: float | torch.Tensor, n_iter: int = 50) -> torch.Tensor:
    """``argmin_z 1/2 ||z - b||^2 + lam TV(z)`` by ``n_iter`` FGP iterations.

    Args:
        b: ``(B, 1, H, W)`` images.
        lam: ``lam >= 0``, a float or a ``(B,)`` tensor (units of ``b``).
        n_iter: dual iterations (accuracy grows like ``1/n_iter^2`` in the dual).
    """
    lam = torch.as_tensor(lam, dtype=b.dtype, device=b.device).reshape(-1, 1, 1, 1)
    safe = lam.clamp(min=torch.finfo(b.dtype).tiny)
    p = torch.zeros(b.shape[0], 2, *b.shape[2:], dtype=b.dtype, device=b.device)
    r, t = p, 1.0
    for _ in range(n_iter):
        step = r + gradient(b - lam * gradient_adjoint(r)) / (8.0 * safe)
        p_new = step / step.pow(2).sum(1, keepdim=True).sqrt().clamp(min=1.0)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        r = p_new + ((t - 1.0) / t_new) * (p_new - p)
        p, t = p_new, t_new
    return b - lam * gradient_adjoint(p)


class TVPrior:
    """TV prior on mu images ``(B, 1, H, W)`` (1/mm).

    Args:
        weight: ``R(u) = weight * TV(u)`` in nats, ``u`` normalized intensity.
            The default maximized PSNR on validation phantoms
            (``benchmarks/bench_priors.py``) at 50 HU noise. The best weight
            there halves when the noise doubles (strength ``lambda = sigma_unit^2
            weight ~ 1.6 sigma_unit`` from 25 to 200 HU), so pass a weight tuned
            for the noise level you work at.
        n_iter: FGP iterations per prox.
    """

    def __init__(self, weight: float = 63.0, n_iter: int = 50) -> None:
        self.weight = float(weight)
        self.n_iter = n_iter

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``argmin_z 1/2 ||z - x||^2 + sigma^2 R(z)``; ``x`` mu (1/mm), ``sigma`` 1/mm."""
        lam = sigma_mu_to_unit(torch.as_tensor(sigma, dtype=x.dtype)) ** 2 * self.weight
        return unit_to_mu(tv_prox(mu_to_unit(x), lam, self.n_iter))

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x) = weight * TV(u)`` in nats, ``(B,)``."""
        return self.weight * total_variation(mu_to_unit(x))

    def log_prior_map(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel ``weight * ||(D u)_pixel||`` (nats per pixel), ``(B, 1, H, W)``; sums to
        :meth:`potential`."""
        return self.weight * gradient(mu_to_unit(x)).pow(2).sum(1, keepdim=True).sqrt()
