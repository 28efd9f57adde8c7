"""PnP-ADMM: a CG data step and a denoiser step that is a proximal operator."""

from __future__ import annotations

import torch

from ctpnp.projector import Tomography
from ctpnp.solvers.common import (
    data_weight_per_item,
    denoiser,
    initial_image,
    keep_active,
    nonnegative,
)
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.equivariance import Mode
from ctpnp.solvers.monitor import Callback, Monitor, SolverResult, StoppingRule, _norms


def pnp_admm(
    y: torch.Tensor,
    op: Tomography,
    prior,
    *,
    sigma_mu_per_mm: float | torch.Tensor = 0.002,
    data_weight: float | torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    max_iter: int = 20,
    rtol: float = 1e-4,
    cg_tol: float = 1e-5,
    cg_maxiter: int = 20,
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
            in nats). Default: estimated from ``y`` for each item.
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
    sigma = torch.as_tensor(sigma_mu_per_mm, dtype=torch.float32)
    rho = 1.0 / sigma.double() ** 2
    tau = (data_weight_per_item(y, data_weight) / rho).float().to(op.device)
    z = initial_image(op, y, x0)
    x = z.clone()
    u = torch.zeros_like(z)
    monitor = Monitor(z.shape[0], StoppingRule(max_iter, rtol), callback)
    with torch.no_grad():
        while monitor.running:
            mask = monitor.step_mask(z)
            x_new = data.prox(z - u, tau, x0=x, tol=cg_tol, maxiter=cg_maxiter).x
            z_new = nonnegative(denoise.prox(x_new + u, sigma_mu_per_mm), enforce_nonnegative)
            u_new = u + x_new - z_new
            monitor.update(torch.cat([z, u], 1), torch.cat([z_new, u_new], 1), z_new,
                           primal_residual=_norms(x_new - z_new),
                           dual_residual=rho.cpu() * _norms(z_new - z))
            x, z, u = (keep_active(mask, new, old)
                       for new, old in ((x_new, x), (z_new, z), (u_new, u)))
    return monitor.result(z)
