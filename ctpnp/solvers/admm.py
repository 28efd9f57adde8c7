"""PnP-ADMM: a CG data step and a denoiser step that is a proximal operator."""

from __future__ import annotations

import torch

from ctpnp.solvers.common import nonnegative
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.monitor import _norms
from ctpnp.solvers.splitting import Splitting, State, StepSettings, splitting_solver

__all__ = ["ADMM", "admm_iteration", "admm_start", "pnp_admm"]


def admm_start(image: torch.Tensor) -> State:
    """ADMM state ``(x, z, u)`` from ``image`` ``(B, 1, H, W)``: ``x = z = image``, ``u = 0``."""
    return image.clone(), image, torch.zeros_like(image)


def admm_iteration(data: LeastSquares, denoise, state: State, sigma_mu_per_mm: torch.Tensor,
                   tau: torch.Tensor, settings: StepSettings) -> State:
    """One scaled-ADMM iteration ``(x, z, u) -> (x+, z+, u+)``; the estimate is ``z``.

    Differentiable in ``sigma_mu_per_mm`` ``(B,)`` and ``tau = data_weight
    sigma^2`` ``(B,)`` (mm⁻²) when autograd is on, as learning parameters needs.
    """
    x, z, u = state
    x_new = data.prox(z - u, tau, x0=x, tol=settings.cg_tol, maxiter=settings.cg_maxiter,
                      preconditioner=settings.preconditioner).x
    relaxed = settings.relaxation * x_new + (1.0 - settings.relaxation) * z
    z_new = nonnegative(denoise.prox(relaxed + u, sigma_mu_per_mm), settings.enforce_nonnegative)
    return x_new, z_new, u + relaxed - z_new


def _tracked(old: State, new: State, sigma_mu_per_mm: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(z, u)`` is the fixed-point variable; primal ``||x - z||`` and dual
    ``rho ||z+ - z||`` residuals (``rho = 1 / sigma^2``)."""
    (_, z, u), (x_new, z_new, u_new) = old, new
    rho = 1.0 / sigma_mu_per_mm.double() ** 2
    return (torch.cat([z, u], 1), torch.cat([z_new, u_new], 1),
            {"primal_residual": _norms(x_new - z_new), "dual_residual": rho * _norms(z_new - z)})


def _restore(state: State, point: torch.Tensor) -> State:
    """``(x, z, u)`` with ``(z, u)`` from ``point`` ``(B, 2, H, W)`` (``x`` is a warm start)."""
    return state[0], point[:, :1], point[:, 1:]


ADMM = Splitting("pnp-admm", admm_start, admm_iteration, _tracked, _restore, """\
Minimize ``data_weight * f(x) + R(x)`` by PnP-ADMM with the prior's proximal operator.

    ``f`` is the least-squares misfit to ``y`` (:class:`LeastSquares`), ``R`` the
    prior's regularizer, whose prox ``prior.prox(v, sigma) = prox_{sigma^2 R}(v)``.
    Scaled ADMM with penalty ``rho = 1 / sigma^2``::

        x = argmin data_weight f(x) + rho/2 ||x - (z - u)||^2     (warm-started PCG)
        x' = alpha x + (1 - alpha) z                              (relaxation)
        z = prior.prox(x' + u, sigma)
        u = u + x' - z

    Returns :class:`SolverResult` with ``x = z``; history has ``primal_residual``
    ``||x - z||`` and ``dual_residual`` ``rho ||z_k+1 - z_k||`` (μ units).
""")

pnp_admm = splitting_solver(ADMM)
