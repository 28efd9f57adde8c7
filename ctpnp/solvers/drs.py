"""PnP Douglas–Rachford splitting with a proximal denoiser."""

from __future__ import annotations

import torch

from ctpnp.projector import Tomography
from ctpnp.solvers.common import (
    denoiser,
    initial_image,
    keep_active,
    nonnegative,
    pnp_settings,
)
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.equivariance import Mode
from ctpnp.solvers.monitor import Callback, Monitor, SolverResult, StoppingRule


def pnp_drs(
    y: torch.Tensor,
    op: Tomography,
    prior,
    *,
    sigma_mu_per_mm: float | torch.Tensor | None = None,
    data_weight: float | torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    max_iter: int = 20,
    rtol: float = 1e-4,
    cg_tol: float = 1e-5,
    cg_maxiter: int = 10,
    enforce_nonnegative: bool = True,
    equivariant: bool | Mode = False,
    seed: int = 0,
    callback: Callback | None = None,
) -> SolverResult:
    """Minimize ``data_weight * f(x) + R(x)`` by Douglas–Rachford on the scaled objective.

    With ``D = prox_{sigma^2 R}`` (the prior) and ``P = prox_{sigma^2 data_weight f}``
    (warm-started CG), iterate::

        d = D(s);  p = P(2 d - s);  s = s + p - d

    and return ``d``. The arguments are those of :func:`~ctpnp.solvers.pnp_admm`.

    Returns:
        :class:`SolverResult`; history has ``fixed_point_residual`` ``||p - d||``.
    """
    data = LeastSquares(op, y, weights)
    denoise = denoiser(prior, equivariant, seed)
    sigma, weight = pnp_settings(prior, "pnp-drs", y, sigma_mu_per_mm, data_weight)
    tau = (weight * sigma.double() ** 2).float().to(op.device)
    state = drs_start(initial_image(op, y, x0))
    monitor = Monitor(y.shape[0], StoppingRule(max_iter, rtol), callback)
    with torch.no_grad():
        while monitor.running:
            mask = monitor.step_mask(state[0])
            new = drs_iteration(data, denoise, state, sigma, tau, cg_tol=cg_tol,
                                cg_maxiter=cg_maxiter, enforce_nonnegative=enforce_nonnegative)
            monitor.update(state[0], new[0], new[1])
            state = tuple(keep_active(mask, n, o) for n, o in zip(new, state, strict=True))
    return monitor.result(state[1])


def drs_start(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DRS state ``(s, d, p)`` starting from ``image`` ``(B, 1, H, W)``: all three equal it."""
    return image, image.clone(), image.clone()


def drs_iteration(
    data: LeastSquares,
    denoise,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    sigma_mu_per_mm: torch.Tensor,
    tau: torch.Tensor,
    *,
    cg_tol: float,
    cg_maxiter: int,
    enforce_nonnegative: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DRS iteration ``(s, d, p) -> (s+, d+, p+)``; the estimate is ``d``.

    Differentiable in ``sigma_mu_per_mm`` and ``tau`` as :func:`~ctpnp.solvers.admm.admm_iteration`.
    """
    s, _, p = state
    d_new = nonnegative(denoise.prox(s, sigma_mu_per_mm), enforce_nonnegative)
    p_new = data.prox(2 * d_new - s, tau, x0=p, tol=cg_tol, maxiter=cg_maxiter).x
    return s + p_new - d_new, d_new, p_new
