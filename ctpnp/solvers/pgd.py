"""PnP proximal gradient descent, with backtracking when the prior has a potential."""

from __future__ import annotations

import torch

from ctpnp.priors.base import HasPotential
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


def pnp_pgd(
    y: torch.Tensor,
    op: Tomography,
    prior,
    *,
    data_weight: float | torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    step: float | None = None,
    sigma_mu_per_mm: float | torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    max_iter: int = 50,
    rtol: float = 1e-4,
    backtracking: bool = True,
    sufficient_decrease: float = 0.1,
    shrink: float = 0.9,
    max_backtracks: int = 30,
    enforce_nonnegative: bool = True,
    equivariant: bool | Mode = False,
    seed: int = 0,
    callback: Callback | None = None,
) -> SolverResult:
    """PnP-PGD ``x = D(x - t grad f(x))`` with ``D = prox_{sigma^2 R}``.

    Each step is a proximal-gradient step on ``F = t f + sigma^2 R``, which
    has the minimizers of ``data_weight f + R`` when ``sigma^2 = t / data_weight``.
    ``t = step`` defaults to ``0.99 / L`` where ``L = max(w) ||A||^2`` is the
    misfit's Lipschitz constant (a convergent step). ``sigma`` and ``data_weight``
    default as in :func:`~ctpnp.solvers.pnp_admm` (dose rule, key ``"pnp-pgd"``);
    a default ``sigma`` is then lowered to ``sqrt(t / data_weight)`` where it is
    larger, so the iteration keeps the minimizers of ``data_weight f + R``.

    Backtracking (gradient-step PnP rule) runs when the prior has a potential
    (:class:`~ctpnp.priors.base.HasPotential`): each
    iteration is a unit step on ``F``, and when
    ``F(x) - F(x+) < sufficient_decrease ||x+ - x||^2`` the ``t`` of that item
    shrinks by ``shrink`` and the step is retried, so ``F`` does not increase
    (a convergent ``t < 1 / L`` always passes with ``sufficient_decrease < 1/2``).
    Without a potential (e.g. BM3D) the step is fixed and divergence (e.g. from
    a too large ``step``) is caught by the monitor.

    Other arguments as in :func:`~ctpnp.solvers.pnp_admm`.

    Returns:
        :class:`SolverResult`; history has ``step`` and, with backtracking,
        ``objective`` ``F(x)``.
    """
    data = LeastSquares(op, y, weights)
    denoise = denoiser(prior, equivariant, seed)
    use_potential = backtracking and isinstance(prior, HasPotential)
    x = initial_image(op, y, x0)
    batch = x.shape[0]
    base_step = 0.99 / data.lipschitz() if step is None else float(step)
    t = torch.full((batch,), base_step, dtype=torch.float64)
    sigma, weight = pnp_settings(prior, "pnp-pgd", y, sigma_mu_per_mm, data_weight)
    if sigma_mu_per_mm is None:  # the largest sigma whose step t keeps F's minimizers
        sigma = torch.minimum(sigma, (t / weight).sqrt().float())
    sigma_mu_per_mm = sigma.to(x.device)
    sigma_sq = sigma.double() ** 2

    def terms(image: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(x), R(x))``, each ``(B,)`` float64 on the CPU."""
        return data.value_of(residual).cpu(), prior.potential(image).double().cpu()

    def proximal_step(image: torch.Tensor, gradient: torch.Tensor, t_now: torch.Tensor
                      ) -> torch.Tensor:
        scale = t_now.float().to(image.device).view(-1, 1, 1, 1)
        return nonnegative(denoise.prox(image - scale * gradient, sigma_mu_per_mm),
                           enforce_nonnegative)

    monitor = Monitor(batch, StoppingRule(max_iter, rtol), callback)
    with torch.no_grad():
        residual = data.residual(x)  # A x - y of the current iterate, reused below
        current = terms(x, residual) if use_potential else None
        while monitor.running:
            mask = monitor.step_mask(x)
            gradient = data.gradient_of(residual)  # fixed while the step is backtracked
            x_new = proximal_step(x, gradient, t)
            residual_new = data.residual(x_new)
            extra = {"step": t.clone()}
            if use_potential:
                candidate = terms(x_new, residual_new)
                for _ in range(max_backtracks):
                    decrease = (t * current[0] + sigma_sq * current[1]
                                - t * candidate[0] - sigma_sq * candidate[1])
                    failing = monitor.active & (
                        decrease < sufficient_decrease * _norms(x_new - x) ** 2)
                    if not bool(failing.any()):
                        break
                    t = torch.where(failing, shrink * t, t)
                    x_new = keep_active(failing.to(x.device).view(-1, 1, 1, 1),
                                        proximal_step(x, gradient, t), x_new)
                    residual_new = data.residual(x_new)
                    candidate = terms(x_new, residual_new)
                extra = {"step": t.clone(), "objective": t * candidate[0] + sigma_sq * candidate[1]}
                current = tuple(torch.where(monitor.active, new, old)
                                for new, old in zip(candidate, current, strict=True))
            monitor.update(x, x_new, x_new, **extra)
            x = keep_active(mask, x_new, x)
            residual = keep_active(mask, residual_new, residual)
    return monitor.result(x)
