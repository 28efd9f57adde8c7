"""The one driver of the splitting solvers (PnP-ADMM, PnP-DRS) over their start/iteration pairs.

A :class:`Splitting` is a state ``(B, 1, H, W)`` triple, how to start it from an
image, one iteration, and what the monitor tracks; the estimate is always
``state[1]``. :func:`splitting_solver` turns one into a solver with the common
signature; the PnP-parameter trainer iterates the same pairs with autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ctpnp.projector import Tomography
from ctpnp.solvers.anderson import Anderson
from ctpnp.solvers.common import denoiser, initial_image, keep_active, pnp_settings
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.equivariance import Mode
from ctpnp.solvers.monitor import Callback, Monitor, SolverResult, StoppingRule
from ctpnp.solvers.parameters import learned_relaxation

__all__ = ["DEFAULT_ANDERSON", "DEFAULT_CG_MAXITER", "DEFAULT_CG_TOL", "DEFAULT_MAX_ITER",
           "DEFAULT_RELAXATION", "LEGACY_SETTINGS", "SHARED_ARGUMENTS", "Splitting",
           "StepSettings", "data_step", "splitting_solver"]

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

DEFAULT_RELAXATION = 1.5
"""The solvers' default relaxation ``alpha`` (over-relaxed; 1 is the plain iteration)."""

DEFAULT_CG_MAXITER = 2
"""CG steps per data update by default: preconditioned steps reduce the residual
several times more than plain ones, and a warm-started data step at a fixed point
needs none, so the cap changes the path, never the fixed points. Measured on the
512² test phantom 9001 (2026-12-01): 2 steps reach 0.1 dB of the end in 16 / 14 s
at 10⁴ / 10⁵ photons against 21 / 18 s with 4, in as many iterations, to the same
PSNR within 0.002 dB; 1 step needs 2.5 times the iterations at 10⁵; at 256² 2 and 4
steps take the same time."""

DEFAULT_MAX_ITER = 100
"""Iteration cap of PnP-ADMM and PnP-DRS by default: the relative-change rule (``rtol``)
stops them first (the Prox-denoiser's defaults settle in 8--14 iterations on the
validation scans, see :data:`DEFAULT_ANDERSON`); the
PnP rules are chosen for that converged result (``pipelines/calibrate/tune_pnp.py``)."""

DEFAULT_ANDERSON = 3
"""Anderson memory of the splitting solvers by default (0: the plain iteration). With
the data step solved to :data:`DEFAULT_CG_TOL`, PnP-ADMM with the Prox-denoiser settles
in 8-14 iterations on the validation scans at 256² and 512², both doses, where the
plain iteration took 15-100 (one of six capped at 100) to the same PSNR within 0.03 dB;
where an extrapolation is rejected the item runs the plain iteration (measured: a 512²
test phantom at 10⁴ photons, 32 iterations either way)."""

DEFAULT_CG_TOL = 1e-6
"""CG's relative residual per data step by default. A looser data step (1e-5) leaves the
iteration wandering at relative changes of 1e-4 to 1e-3 at high dose, which neither
the plain nor the accelerated iteration gets below ``rtol``."""

LEGACY_SETTINGS = {"preconditioner": None, "relaxation": 1.0, "cg_maxiter": 10,
                   "cg_tol": 1e-5, "anderson": 0}
"""Keyword arguments that select the configuration before preconditioning, relaxation
and acceleration (plain CG up to 10 steps to 1e-5, unrelaxed), for comparisons."""


@dataclass(frozen=True)
class StepSettings:
    """How an iteration computes its steps: the data step's CG tolerance, iterations
    and preconditioner (``"fourier"`` or ``None``, see
    :meth:`~ctpnp.solvers.data_fidelity.LeastSquares.prox`), whether the
    denoiser output is clipped to μ ≥ 0, and the relaxation ``alpha`` in (0, 2)
    (1: the plain iteration)."""

    cg_tol: float
    cg_maxiter: int
    enforce_nonnegative: bool
    preconditioner: str | None = None
    relaxation: float = 1.0


@dataclass(frozen=True)
class Splitting:
    """A splitting method.

    Attributes:
        method: its name in :data:`ctpnp.registry.METHODS` (the key of its dose rule).
        start: state from the starting image ``(B, 1, H, W)``.
        iteration: ``iteration(data, denoise, state, sigma_mu_per_mm, tau, settings)
            -> state`` (``settings``: :class:`StepSettings`); differentiable in ``sigma``
            ``(B,)`` and ``tau = data_weight sigma^2`` ``(B,)`` when autograd is on.
        tracked: ``tracked(old, new, sigma_mu_per_mm) -> (old_point, new_point, extra)``:
            consecutive fixed-point iterates the monitor compares and further
            ``(B,)`` history entries.
        restore: ``restore(state, point) -> state`` with its fixed-point variable
            replaced by ``point`` (shaped as ``tracked``'s), for acceleration.
        summary: the solver's docstring up to its arguments.
    """

    method: str
    start: Callable[[torch.Tensor], State]
    iteration: Callable[..., State]
    tracked: Callable[[State, State, torch.Tensor],
                      tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]
    restore: Callable[[State, torch.Tensor], State]
    summary: str


SHARED_ARGUMENTS = """
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
        cg_tol, cg_maxiter: accuracy of each data step (CG).
        preconditioner: the data step's CG preconditioner, ``"fourier"`` (default: an
            FFT-diagonal fit of ``A^T A``; same system, same tolerance, so the same
            fixed points, in fewer projections) or ``None`` (plain CG).
        relaxation: ``alpha`` in (0, 2) of the relaxed iteration (1: unrelaxed). The
            relaxed iteration is the Krasnosel'skii–Mann step of the same
            Douglas–Rachford operator: the same fixed points, reached in fewer
            iterations (measured: ``benchmarks/bench_solvers.py``). Default: the
            value stored with the prior's dose rule
            (:func:`~ctpnp.solvers.parameters.learned_relaxation`), else
            :data:`DEFAULT_RELAXATION`.
        anderson: memory ``m`` of the safeguarded Anderson acceleration of the
            fixed-point iteration (:mod:`ctpnp.solvers.anderson`; same fixed
            points), 0 for the plain iteration.
        enforce_nonnegative: clip the denoiser output to μ ≥ 0.
        equivariant: apply the prior under random (or averaged) flips/rotations.
        seed: seed of the equivariant transforms.
        callback: progress, ``callback(iteration, record, estimate)`` (see :data:`Callback`).
"""


def data_step(data_weight: torch.Tensor, sigma_mu_per_mm: torch.Tensor) -> torch.Tensor:
    """``tau = data_weight sigma^2`` ``(B,)`` float32 (mm⁻²): the data step's weight
    relative to the denoiser's ``1 / sigma^2`` penalty."""
    return (data_weight * sigma_mu_per_mm.double() ** 2).float()


def splitting_solver(scheme: Splitting) -> Callable[..., SolverResult]:
    """The solver of ``scheme``: ``solve(y, op, prior, **settings) -> SolverResult``."""

    def solve(
        y: torch.Tensor,
        op: Tomography,
        prior,
        *,
        sigma_mu_per_mm: float | torch.Tensor | None = None,
        data_weight: float | torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
        max_iter: int = DEFAULT_MAX_ITER,
        rtol: float = 1e-4,
        cg_tol: float = DEFAULT_CG_TOL,
        cg_maxiter: int = DEFAULT_CG_MAXITER,
        preconditioner: str | None = "fourier",
        relaxation: float | None = None,
        anderson: int = DEFAULT_ANDERSON,
        enforce_nonnegative: bool = True,
        equivariant: bool | Mode = False,
        seed: int = 0,
        callback: Callback | None = None,
    ) -> SolverResult:
        data = LeastSquares(op, y, weights)
        denoise = denoiser(prior, equivariant, seed)
        sigma, weight = pnp_settings(prior, scheme.method, y, sigma_mu_per_mm, data_weight)
        if relaxation is None:
            relaxation = learned_relaxation(prior, scheme.method) or DEFAULT_RELAXATION
        tau = data_step(weight, sigma).to(op.device)
        sigma_on_device = sigma.to(op.device)  # the denoiser's, beside its images
        state = scheme.start(initial_image(op, y, x0))
        if not 0.0 < relaxation < 2.0:
            raise ValueError(f"relaxation must be in (0, 2), got {relaxation}")
        settings = StepSettings(cg_tol, cg_maxiter, enforce_nonnegative, preconditioner,
                                relaxation)
        monitor = Monitor(y.shape[0], StoppingRule(max_iter, rtol), callback)
        accelerator = Anderson(anderson) if anderson else None
        estimate = state[1]  # the last denoiser output (an accelerated state need not be one)
        with torch.no_grad():
            while monitor.running:
                mask = monitor.step_mask(state[1])
                new = scheme.iteration(data, denoise, state, sigma_on_device, tau, settings)
                old_point, new_point, extra = scheme.tracked(state, new, sigma)
                monitor.update(old_point, new_point, new[1], **extra)
                estimate = keep_active(mask, new[1], estimate)
                if accelerator is not None:
                    new = scheme.restore(new, accelerator.step(old_point, new_point))
                state = tuple(keep_active(mask, n, o) for n, o in zip(new, state, strict=True))
        return monitor.result(estimate)

    solve.__name__ = solve.__qualname__ = scheme.method.replace("-", "_")
    solve.__doc__ = scheme.summary + SHARED_ARGUMENTS
    return solve
