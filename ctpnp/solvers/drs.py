"""PnP Douglas–Rachford splitting with a proximal denoiser."""

from __future__ import annotations

import torch

from ctpnp.solvers.common import nonnegative
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.splitting import Splitting, State, StepSettings, splitting_solver

__all__ = ["DRS", "drs_iteration", "drs_start", "pnp_drs"]


def drs_start(image: torch.Tensor) -> State:
    """DRS state ``(s, d, p)`` starting from ``image`` ``(B, 1, H, W)``: all three equal it."""
    return image, image.clone(), image.clone()


def drs_iteration(data: LeastSquares, denoise, state: State, sigma_mu_per_mm: torch.Tensor,
                  tau: torch.Tensor, settings: StepSettings) -> State:
    """One DRS iteration ``(s, d, p) -> (s+, d+, p+)``; the estimate is ``d``.

    Differentiable in ``sigma_mu_per_mm`` and ``tau`` as :func:`~ctpnp.solvers.admm.admm_iteration`.
    """
    s, _, p = state
    d_new = nonnegative(denoise.prox(s, sigma_mu_per_mm), settings.enforce_nonnegative)
    p_new = data.prox(2 * d_new - s, tau, x0=p, tol=settings.cg_tol,
                      maxiter=settings.cg_maxiter,
                      preconditioner=settings.preconditioner).x
    return s + settings.relaxation * (p_new - d_new), d_new, p_new


def _tracked(old: State, new: State, _sigma: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``s`` is the fixed-point variable; nothing further to record."""
    return old[0], new[0], {}


def _restore(state: State, point: torch.Tensor) -> State:
    """``(s, d, p)`` with ``s`` replaced by ``point``."""
    return point, state[1], state[2]


DRS = Splitting("pnp-drs", drs_start, drs_iteration, _tracked, _restore, """\
Minimize ``data_weight * f(x) + R(x)`` by Douglas–Rachford on the scaled objective.

    With ``D = prox_{sigma^2 R}`` (the prior) and ``P = prox_{sigma^2 data_weight f}``
    (warm-started PCG) and relaxation ``alpha``, iterate::

        d = D(s);  p = P(2 d - s);  s = s + alpha (p - d)

    and return ``d``. Returns :class:`SolverResult`; history has
    ``fixed_point_residual`` ``||p - d||``.
""")

pnp_drs = splitting_solver(DRS)
