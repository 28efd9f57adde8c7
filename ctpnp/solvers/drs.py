"""PnP Douglas–Rachford splitting with a proximal denoiser."""

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
from ctpnp.solvers.monitor import Callback, Monitor, SolverResult, StoppingRule


def pnp_drs(
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
    sigma = torch.as_tensor(sigma_mu_per_mm, dtype=torch.float32)
    tau = (data_weight_per_item(y, data_weight) * sigma.double() ** 2).float().to(op.device)
    s = initial_image(op, y, x0)
    d = s.clone()
    p = s.clone()
    monitor = Monitor(s.shape[0], StoppingRule(max_iter, rtol), callback)
    with torch.no_grad():
        while monitor.running:
            mask = monitor.step_mask(s)
            d_new = nonnegative(denoise.prox(s, sigma_mu_per_mm), enforce_nonnegative)
            p_new = data.prox(2 * d_new - s, tau, x0=p, tol=cg_tol, maxiter=cg_maxiter).x
            s_new = s + p_new - d_new
            monitor.update(s, s_new, d_new)
            s, d, p = (keep_active(mask, new, old)
                       for new, old in ((s_new, s), (d_new, d), (p_new, p)))
    return monitor.result(d)
