"""TV-regularized reconstruction by PDHG (Chambolle–Pock), run to convergence: the baseline."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from ctpnp.atomic import staged_file
from ctpnp.physics import MU_WATER_PER_MM, estimate_noise_variance
from ctpnp.priors.tv import gradient, gradient_adjoint, total_variation
from ctpnp.projector import Tomography
from ctpnp.solvers.common import initial_image, keep_active
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.monitor import Callback, Monitor, SolverResult, StoppingRule
from ctpnp.solvers.parameters import REFERENCE_VARIANCE

DEFAULT_MAX_ITER = 2500
"""TV's iteration cap; with the default dual scale it stops by its rule (relative change
below ``rtol``) after 500-1000 iterations on the validation scans."""

GRADIENT_NORM_SQ = 8.0
"""``||grad||^2 <= 8`` for forward differences on a 2D grid."""

WEIGHT_RULE_PATH = Path(__file__).with_name("tv_weight.json")
"""TV's default weight rule as ``pipelines/calibrate/tune_tv.py --write-rule`` fitted it:
``weight_per_noise_variance_mm`` (``c`` at ``v = reference_variance``) and
``weight_exponent`` (``d log(weight / v) / d log v``), with the results file it came
from. It passes through the best weights of the validation grid at the mean noise
variance of each dose's validation scans; relative to the noise, TV is weighted more
at high dose, where the discretization error of the pixel model, not the noise,
dominates."""


@functools.cache
def weight_rule() -> dict[str, float]:
    """The fitted rule of :data:`WEIGHT_RULE_PATH` (read once)."""
    return json.loads(WEIGHT_RULE_PATH.read_text())


def store_weight_rule(rule: dict[str, float], source: str) -> Path:
    """Write ``rule`` (``weight_per_noise_variance_mm``, ``weight_exponent``,
    ``reference_variance``) to :data:`WEIGHT_RULE_PATH` (atomically), naming the
    results file it was fitted in."""
    if rule["reference_variance"] != REFERENCE_VARIANCE:
        raise ValueError(f"rule fitted at reference variance {rule['reference_variance']}, "
                         f"the solvers use {REFERENCE_VARIANCE}")
    with staged_file(WEIGHT_RULE_PATH) as temporary:
        temporary.write_text(json.dumps({**rule, "fitted_in": source}, indent=2) + "\n")
    weight_rule.cache_clear()
    return WEIGHT_RULE_PATH


def default_weight_mm(variance: torch.Tensor, rule: dict[str, float] | None = None
                      ) -> torch.Tensor:
    """TV's default weight (mm) for ``(B,)`` estimated noise variances ``v``, by the
    shipped rule or by ``rule`` (the same keys).

    ``weight = c (v / v_ref)^e v`` with ``c``, ``e`` and ``v_ref`` from
    :func:`weight_rule`: the same log-linear dose rule as the PnP parameters
    (:mod:`ctpnp.solvers.parameters`), fitted by ``pipelines/calibrate/fit_rules.py``
    through the best weight at each grid size and dose on the validation scans
    (``pipelines/calibrate/tune_tv.py``: textured random anatomy seed 5001, a real
    head slice and slices 20 and 40 of the corpus's validation patient lung2 at
    256², phantom 5001 and lung2/20 at 512², 0.8 mm, 1e4 and 1e5 photons) for TV
    run to convergence, never on the test scans.
    """
    rule = weight_rule() if rule is None else rule
    ratio = variance / rule["reference_variance"]
    return rule["weight_per_noise_variance_mm"] * ratio.pow(rule["weight_exponent"]) * variance


def pdhg_steps(op: Tomography, rule: str
               ) -> tuple[torch.Tensor | float, float, torch.Tensor | float]:
    """PDHG steps ``(data dual, gradient dual, primal)`` for ``K = [A; grad]``.

    * ``"diagonal"``: Pock–Chambolle diagonal preconditioning (α = 1):
      dual steps ``1 / sum_j |K_ij|`` (``1 / (A 1)`` per ray, ``1/2`` for a forward
      difference) and primal steps ``1 / sum_i |K_ij|`` (``1 / (A^T 1 + 4)`` per
      pixel): one forward and one back-projection of ones, no norm estimate.
    * ``"balanced"``: ``K = [A / c; grad]`` with ``c = ||A|| / sqrt(8)`` so that
      both blocks have norm ``sqrt(8)``, and ``tau = sigma = 0.99 / ||K||``.

    Both satisfy PDHG's step condition, so both converge to the same minimizer.
    The diagonal rule's data step is ``(1, 1, views, channels)`` and its primal step
    ``(1, 1, H, W)``; the balanced rule's are floats.

    Raises:
        ValueError: an unknown rule.
    """
    if rule == "diagonal":
        with torch.no_grad():
            ones = torch.ones((1, 1, *op.image_shape), device=op.device)
            row_sums = op.forward(ones)
            column_sums = op.adjoint(torch.ones_like(row_sums))
        data_step = 1.0 / row_sums.clamp_min(1e-6 * float(row_sums.max()))
        return data_step, 0.5, 1.0 / (column_sums + 4.0)
    if rule == "balanced":
        scale = op.norm() / GRADIENT_NORM_SQ**0.5
        step = 0.99 / (2.0 * GRADIENT_NORM_SQ) ** 0.5
        return step / scale**2, step, step
    raise ValueError(f"steps={rule!r} is unknown: expected 'diagonal' or 'balanced'")


def dual_scale_for(weight_mm: torch.Tensor) -> torch.Tensor:
    """TV's default PDHG dual scale for weights ``weight_mm`` (mm, any shape):
    ``weight_mm / μ_water``, the ratio of the bound on the gradient's dual variable
    to the size of the image (1/mm)."""
    return weight_mm / MU_WATER_PER_MM


def tv(
    y: torch.Tensor,
    op: Tomography,
    *,
    weight_mm: float | torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    rtol: float = 1e-5,
    steps: str = "diagonal",
    dual_scale: float | torch.Tensor | None = None,
    callback: Callback | None = None,
) -> SolverResult:
    """Minimize ``f(x) + weight_mm * TV(x)`` subject to μ ≥ 0, run to convergence.

    ``f`` is the (weighted) least-squares misfit (:class:`LeastSquares`), TV the
    isotropic total variation of μ (1/mm per pixel step), so ``weight_mm`` is in
    mm; by default it follows the dose (:func:`default_weight_mm` of the noise
    variance estimated from ``y``); a given one is a scalar or ``(B,)``.
    PDHG (Chambolle–Pock) on ``K = [A; grad]`` with the step rule ``steps``
    (:func:`pdhg_steps`): ``"diagonal"`` (default) or ``"balanced"``. Both converge
    to the same minimizer; the diagonal rule gets there in far fewer iterations.
    ``dual_scale`` multiplies the dual steps and divides the primal ones, which
    keeps PDHG's step condition: the same iteration on ``μ / dual_scale``. Its
    default for the diagonal rule, ``weight_mm / μ_water`` (:func:`dual_scale_for`),
    balances the dual of the gradient, bounded by the weight, against the image;
    without it (``1``) a large weight needs thousands of iterations before the
    bound is ever reached (512² at 10⁴ photons: 34.4 dB after 1000 iterations,
    against 34.9 after 250 with it). The balanced rule keeps ``1``.
    The defaults run TV to its minimizer, for which the default weight
    (:func:`default_weight_mm`) was chosen: on the 256² validation scans every weight
    of the grid stops by ``rtol`` within 1000 iterations with the PSNR at half of
    them equal to 0.1 dB, so a shorter run is an early stop that the weight was not
    chosen for.

    Returns:
        :class:`SolverResult`; history has ``objective``.
    """
    data = LeastSquares(op, y, weights)
    if weight_mm is None:
        weight_mm = default_weight_mm(estimate_noise_variance(y))
    weight = torch.as_tensor(weight_mm, dtype=torch.float32, device=op.device).view(-1, 1, 1, 1)
    w = torch.ones_like(y) if data.weights is None else data.weights
    data_step, gradient_step, primal_step = pdhg_steps(op, steps)
    if dual_scale is None:
        dual_scale = dual_scale_for(weight) if steps == "diagonal" else 1.0
    scale = torch.as_tensor(dual_scale, dtype=torch.float32, device=op.device).view(-1, 1, 1, 1)
    data_step, gradient_step, primal_step = (data_step * scale, gradient_step * scale,
                                             primal_step / scale)
    # prox of the conjugate of s -> 1/2 sum w (s - y)^2 at the dual steps `data_step`
    damping = 1.0 / (1.0 + data_step / w)

    x = initial_image(op, y, x0)
    x_bar = x.clone()
    # A is linear, so A x_bar = 2 A x_new - A x: one forward projection per
    # iteration serves both the dual step and the objective
    projection = op.forward(x)
    projection_bar = projection.clone()
    p = torch.zeros_like(y)
    q = torch.zeros((x.shape[0], 2, *x.shape[2:]), dtype=x.dtype, device=x.device)
    monitor = Monitor(x.shape[0], StoppingRule(max_iter, rtol), callback)
    with torch.no_grad():
        while monitor.running:
            mask = monitor.step_mask(x)
            p_new = (p + data_step * (projection_bar - y)) * damping
            q_step = q + gradient_step * gradient(x_bar)
            q_new = q_step / (q_step.pow(2).sum(1, keepdim=True).sqrt() / weight).clamp_min(1.0)
            x_new = (x - primal_step * (op.adjoint(p_new) + gradient_adjoint(q_new))
                     ).clamp_min(0.0)
            projection_new = op.forward(x_new)
            objective = (data.value_of(projection_new - y).cpu()
                         + weight.flatten().cpu().double() * total_variation(x_new).double().cpu())
            monitor.update(x, x_new, x_new, objective=objective)
            x_bar = keep_active(mask, 2 * x_new - x, x_bar)
            projection_bar = keep_active(mask, 2 * projection_new - projection, projection_bar)
            x, p = keep_active(mask, x_new, x), keep_active(mask, p_new, p)
            q = keep_active(mask, q_new, q)
            projection = keep_active(mask, projection_new, projection)
    return monitor.result(x)
