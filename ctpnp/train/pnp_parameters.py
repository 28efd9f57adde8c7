"""Learn the PnP dose rule by restarted Jacobian-free backpropagation (JFB).

The four numbers of :class:`~ctpnp.solvers.parameters.PnPParameters`
(log-intercepts and exponents of the denoiser strength and of the data weight)
are learned for one prior and one solver on simulated phantom scans at
several doses, following Davy, Briceño-Arias & Pustelnik (2025):

* every training scan keeps its solver state between visits, so the iteration
  is *restarted* from where it was instead of from FBP;
* each visit runs a block of iterations without gradient, then a block with
  gradient, and the loss (mean squared error in HU against the phantom)
  is back-propagated through that last block only -- Jacobian-free, since at
  an approximate fixed point the Jacobian of the remaining iterations is
  dropped;
* parameters live as logarithms, so they stay positive and Adam's steps are
  relative.

The data x-update is differentiated implicitly
(:meth:`~ctpnp.solvers.data_fidelity.LeastSquares.prox`), the denoiser by
double back-propagation through the network; the prior's weights stay fixed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ctpnp import physics
from ctpnp.atomic import staged_file
from ctpnp.priors.weights import card_path
from ctpnp.projector import Tomography
from ctpnp.quality import psnr_hu
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.solvers import SPLITTINGS
from ctpnp.solvers.parameters import CARD_KEY, PnPParameters, settings
from ctpnp.solvers.splitting import DEFAULT_RELAXATION, StepSettings, data_step
from ctpnp.train.pnp_scans import scan_set

__all__ = ["PnPTrainConfig", "learn_pnp_parameters", "store_pnp_parameters"]

@dataclass(frozen=True)
class PnPTrainConfig:
    """Settings of :func:`learn_pnp_parameters`.

    Attributes:
        solver: one of :data:`ctpnp.solvers.SPLITTINGS` (``"pnp-admm"``, ``"pnp-drs"``).
        image_size: training slices are ``image_size²`` pixels of ``pixel_mm`` (mm),
            random anatomy filling the field of view, clinical curved fan of ``n_views``.
        photons: the doses (incident photons per reading) trained on; the dose rule
            is fitted across them.
        seeds: random-anatomy seeds of the training scans (distinct from the priors'
            training seeds 0-31, the validation seeds 5001-5002, the benchmark's
            test seeds 9001-9002 and the study's 7001+).
        steps: Adam steps; step ``k`` visits scan ``k mod n_scans``.
        warm_iterations: iterations without gradient per visit.
        grad_iterations: iterations back-propagated per visit.
        learning_rate: Adam's step on the logarithms.
        cg_maxiter: CG iterations per data update (forward and implicit backward solve).
        preconditioner / relaxation: the data step's CG preconditioner and the
            iteration's relaxation, by default the solvers' own
            (:class:`~ctpnp.solvers.splitting.StepSettings`), so the rule is learned on
            the iteration it will run in.
    """

    solver: str = "pnp-admm"
    image_size: int = 256
    pixel_mm: float = 0.8
    n_views: int = 360
    photons: tuple[float, ...] = (1e4, 1e5)
    seeds: tuple[int, ...] = (101, 102)
    steps: int = 24
    warm_iterations: int = 4
    grad_iterations: int = 1
    learning_rate: float = 0.1
    cg_maxiter: int = 8
    preconditioner: str | None = "fourier"
    relaxation: float = DEFAULT_RELAXATION

    def __post_init__(self) -> None:
        if self.solver not in SPLITTINGS:
            raise ValueError(f"solver={self.solver!r}: learnable for {sorted(SPLITTINGS)}")
        if min(self.steps, self.grad_iterations, self.cg_maxiter) < 1 or self.warm_iterations < 0:
            raise ValueError("steps, grad_iterations, cg_maxiter must be >= 1, "
                             "warm_iterations >= 0")


def learn_pnp_parameters(
    prior,
    config: PnPTrainConfig = PnPTrainConfig(),
    *,
    initial: PnPParameters | None = None,
    device: str = "cpu",
    progress: Callable[[dict], object] | None = None,
) -> tuple[PnPParameters, list[dict]]:
    """Learn the dose rule of ``config.solver`` with ``prior`` by restarted JFB.

    Args:
        prior: a prior with a differentiable ``prox(x, sigma)`` (LPN, Prox-denoiser).
        config: data and optimization settings.
        initial: starting parameters (default: the untrained rule).
        device: ``"cpu"`` or ``"cuda"``.
        progress: called after each step with a training event, the shape the prior
            trainers report: ``{"event": "step", "step": steps done, "total_steps",
            "loss": loss_hu2, **log entry}``.

    Returns:
        The learned parameters and the per-step log (``step``, ``scan``, its
        estimated noise ``variance``, ``loss_hu2``,
        ``psnr_full`` of the estimate before the step, ``sigma_hu``,
        ``data_scale``, the four parameters after the step, ``seconds``).
    """
    geometry = ScanGeometry.clinical_fan((config.image_size,) * 2, config.pixel_mm,
                                         config.n_views)
    op = Tomography(geometry, device)
    scans = scan_set(op, config.solver, config.photons, phantom_seeds=config.seeds)
    for parameter in getattr(prior, "network", torch.nn.Module()).parameters():
        parameter.requires_grad_(False)
    theta = (initial or PnPParameters()).vector().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=config.learning_rate)
    iterate = SPLITTINGS[config.solver].iteration  # warm block, then the back-propagated block
    steps = StepSettings(cg_tol=1e-6, cg_maxiter=config.cg_maxiter, enforce_nonnegative=True,
                         preconditioner=config.preconditioner, relaxation=config.relaxation)
    log: list[dict] = []
    start = time.perf_counter()
    for step in range(config.steps):
        index = torch.tensor([step % len(scans)])
        data, variance = scans.data(index), scans.variance[index]
        reference_hu = scans.reference_hu[index]
        sigma, weight = settings(theta, variance)
        sigma, tau = sigma.to(op.device), data_step(weight, sigma).to(op.device)
        state = scans.get(index)
        with torch.no_grad():
            for _ in range(config.warm_iterations):
                state = iterate(data, prior, state, sigma.detach(), tau.detach(), steps)
        with torch.enable_grad():
            for _ in range(config.grad_iterations):
                state = iterate(data, prior, state, sigma, tau, steps)
            estimate_hu = physics.mu_to_hu(state[1])
            loss = (estimate_hu - reference_hu).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        scans.put(index, state)
        learned = PnPParameters.from_vector(theta)
        entry = {"step": step, "scan": step % len(scans), "variance": float(variance[0]),
                 "loss_hu2": float(loss.detach()),
                 "psnr_full": float(psnr_hu(estimate_hu.detach(), reference_hu)),
                 "sigma_hu": physics.mu_difference_to_hu(float(sigma[0].detach())),
                 "data_scale": float(weight[0].detach() * variance[0]),
                 **asdict(learned), "seconds": time.perf_counter() - start}
        log.append(entry)
        if progress is not None:
            progress({**entry, "event": "step", "step": step + 1, "total_steps": config.steps,
                      "loss": entry["loss_hu2"]})
    return PnPParameters.from_vector(theta), log


def store_pnp_parameters(weights_path: str | Path, solver: str, parameters: PnPParameters,
                         training: dict, *, relaxation: float | None = None) -> Path:
    """Add a dose rule to the model card beside ``weights_path`` (atomically).

    The card's ``pnp_parameters.<solver>`` holds the parameters, the solver's
    ``relaxation`` when one is given (the solvers' default when it is not; see
    :func:`ctpnp.solvers.parameters.learned_relaxation`) and ``training``: how
    they were obtained (``"method"``: ``"restarted JFB"`` with its configuration
    and per-step log, or ``"validation grid"`` with the grid and its results); the
    weights file is not touched.
    """
    path = card_path(weights_path)
    card = json.loads(path.read_text())
    entry = parameters.to_card()
    if relaxation is not None:
        entry["relaxation"] = float(relaxation)
    card.setdefault(CARD_KEY, {})[solver] = {**entry, "training": training}
    with staged_file(path) as staged:
        Path(staged).write_text(json.dumps(card, indent=2) + "\n")
    return path
