"""PnP-ADMM: a CG data step and a denoiser step that is a proximal operator."""

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
from ctpnp.solvers.monitor import Callback, Monitor, SolverResult, StoppingRule, _norms


def pnp_admm(
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
    """Minimize ``data_weight * f(x) + R(x)`` with the prior's proximal operator.

    ``f`` is the least-squares misfit to ``y`` (:class:`LeastSquares`), ``R`` the
    prior's regularizer, whose prox ``prior.prox(v, sigma) = prox_{sigma^2 R}(v)``.
    Scaled ADMM with penalty ``rho = 1 / sigma^2``::

        x = argmin data_weight f(x) + rho/2 ||x - (z - u)||^2     (warm-started CG)
        z = prior.prox(x + u, sigma)
        u = u + x - z

    Args:
        y: ``(B, 1, views, channels)`` post-log sinograms.
        op: forward model.
        prior: object with ``prox(x, sigma)`` on μ images.
        sigma_mu_per_mm: denoiser strength σ (1/mm); scalar or ``(B,)``.
        data_weight: weight of the misfit, scalar or ``(B,)`` (dimensionless; the
            inverse noise variance of the post-log data when ``R`` is a log-prior
            in nats). Defaults of both: the dose rule learned for this solver
            and prior when its model card has one, else ``σ = 0.002/mm`` and
            the inverse noise variance estimated from ``y``
            (:func:`~ctpnp.solvers.common.pnp_settings`).
        weights: statistical weights of the data (see :class:`LeastSquares`).
        x0: starting image ``(B, 1, H, W)``; default FBP (Hann).
        max_iter, rtol: see :class:`StoppingRule`.
        cg_tol, cg_maxiter: accuracy of each x-update.
        enforce_nonnegative: clip the denoiser output to μ ≥ 0.
        equivariant: apply the prior under random (or averaged) flips/rotations.
        seed: seed of the equivariant transforms.
        callback: progress, ``callback(iteration, record, estimate)`` (see :data:`Callback`).

    Returns:
        :class:`SolverResult` with ``x = z``; history has ``primal_residual``
        ``||x - z||`` and ``dual_residual`` ``rho ||z_k+1 - z_k||`` (μ units).
    """
    data = LeastSquares(op, y, weights)
    denoise = denoiser(prior, equivariant, seed)
    sigma, weight = pnp_settings(prior, "pnp-admm", y, sigma_mu_per_mm, data_weight)
    rho = 1.0 / sigma.double() ** 2
    tau = (weight / rho).float().to(op.device)
    state = admm_start(initial_image(op, y, x0))
    monitor = Monitor(y.shape[0], StoppingRule(max_iter, rtol), callback)
    with torch.no_grad():
        while monitor.running:
            mask = monitor.step_mask(state[1])
            new = admm_iteration(data, denoise, state, sigma, tau, cg_tol=cg_tol,
                                 cg_maxiter=cg_maxiter, enforce_nonnegative=enforce_nonnegative)
            (x_new, z_new, u_new), (_, z, u) = new, state
            monitor.update(torch.cat([z, u], 1), torch.cat([z_new, u_new], 1), z_new,
                           primal_residual=_norms(x_new - z_new),
                           dual_residual=rho * _norms(z_new - z))
            state = tuple(keep_active(mask, n, o) for n, o in zip(new, state, strict=True))
    return monitor.result(state[1])


def admm_start(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ADMM state ``(x, z, u)`` from ``image`` ``(B, 1, H, W)``: ``x = z = image``, ``u = 0``."""
    return image.clone(), image, torch.zeros_like(image)


def admm_iteration(
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
    """One scaled-ADMM iteration ``(x, z, u) -> (x+, z+, u+)``; the estimate is ``z``.

    Differentiable in ``sigma_mu_per_mm`` ``(B,)`` and ``tau = data_weight
    sigma^2`` ``(B,)`` (mm⁻²) when autograd is on, as learning parameters needs.
    """
    x, z, u = state
    x_new = data.prox(z - u, tau, x0=x, tol=cg_tol, maxiter=cg_maxiter).x
    z_new = nonnegative(denoise.prox(x_new + u, sigma_mu_per_mm), enforce_nonnegative)
    return x_new, z_new, u + x_new - z_new
