"""Fine-tune a Prox-denoiser's network on the PnP iterates it meets in CT, by restarted JFB.

A denoiser trained on white Gaussian noise meets other inputs inside PnP: the
iterates of a low-dose CT reconstruction carry correlated noise and streaks, and
the fixed point is where those inputs come from. Fine-tuning trains the network
on them (Davy, Briceño-Arias & Pustelnik 2025, applied to the network's weights
instead of the step sizes): every training scan (:mod:`ctpnp.train.pnp_scans`)
keeps its PnP-ADMM state; a step visits a batch of scans, runs
``warm_iterations`` without gradient from where each was left, then one
iteration whose denoiser output is compared with the scanned image (mean
squared error in HU) and back-propagated into the weights only -- the
Jacobian of the earlier iterations is dropped, as near a fixed point it may
be. The denoising strength and data weight are the prior's dose rule, so the
network learns on the iterations it will run in.

The result is a weights file whose card records the fine-tuning (data,
steps, time, device, loss history). It is still a gradient-step denoiser
``D = Id - gamma grad g``; whether it is an exact prox depends on
``||Hess g||``, which :func:`ctpnp.train.relaxation.relax_prox_weights`
measures and restores (``pipelines/train_priors.py`` runs it after this).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ctpnp import physics
from ctpnp.data import SPLITS, patient_slices_hu
from ctpnp.priors.normalization import mu_to_unit
from ctpnp.priors.prox_denoiser import ProxDenoiserPrior, hessian_spectral_norm
from ctpnp.priors.weights import load_weights, save_weights
from ctpnp.projector import Tomography
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.solvers import SPLITTINGS
from ctpnp.solvers.parameters import learned_parameters
from ctpnp.solvers.splitting import DEFAULT_RELAXATION, StepSettings, data_step
from ctpnp.train.checkpoint import Checkpoint
from ctpnp.train.data import corpus_record
from ctpnp.train.device import describe_device, training_device
from ctpnp.train.pnp_scans import ScanSet, scan_set
from ctpnp.versions import package_versions

__all__ = ["PnPFinetuneConfig", "finetune_on_pnp", "training_slices_hu"]

_STORED = ("format", "sha256", "validation")  # not carried over: stale for new weights


@dataclass(frozen=True)
class PnPFinetuneConfig:
    """Everything that defines a fine-tuning run (stored in its checkpoint and card).

    Attributes:
        solver: the splitting whose iterates train the network (its dose rule, from
            the card, sets each scan's sigma and data weight).
        image_size / pixel_mm / n_views: training scans are ``image_size²`` pixels of
            ``pixel_mm`` (mm), clinical curved fan of ``n_views``.
        photons: doses; every image is scanned at each.
        phantom_seeds: random anatomies (distinct from the validation seeds 5001-5002,
            the benchmark's 9001-9002 and the study's 7001+).
        real_patients: corpus patients (:data:`ctpnp.data.SPLITS`, training set only).
        slices_per_patient: slices of each, evenly spaced over its middle 80 %.
        steps: Adam steps.
        batch_size: scans per step.
        start_iterations: iterations every scan runs from FBP before the first step.
        warm_iterations: iterations without gradient per visit.
        learning_rate: Adam's step on the network weights.
        cg_maxiter: CG iterations per data step (to relative residual 1e-6).
        hessian_weight: weight (HU² per unit) of the penalty ``max(0, ||Hess(gamma g)||
            - hessian_target)`` on one ``hessian_patch``² crop of each scan's current
            iterate at its sigma (``hessian_power_iters`` power iterations); 0 turns it
            off. It keeps the relaxed network near an exact prox, so the relaxation
            after fine-tuning (:mod:`ctpnp.train.relaxation`) takes back less.
        seed: RNG seed of the batch draws.
        checkpoint_every / progress_every: steps between checkpoints / progress reports.
    """

    solver: str = "pnp-admm"
    image_size: int = 256
    pixel_mm: float = 0.8
    n_views: int = 360
    photons: tuple[float, ...] = (1e4, 1e5)
    phantom_seeds: tuple[int, ...] = tuple(range(6))
    real_patients: tuple[str, ...] = SPLITS["train"]
    slices_per_patient: int = 6
    steps: int = 600
    batch_size: int = 4
    start_iterations: int = 10
    warm_iterations: int = 2
    learning_rate: float = 1e-5
    cg_maxiter: int = 4
    hessian_weight: float = 0.0
    hessian_target: float = 0.9
    hessian_patch: int = 64
    hessian_power_iters: int = 8
    seed: int = 0
    checkpoint_every: int = 50
    progress_every: int = 10

    def __post_init__(self) -> None:
        if self.solver not in SPLITTINGS:
            raise ValueError(f"solver={self.solver!r}: one of {sorted(SPLITTINGS)}")
        leaked = set(self.real_patients) - set(SPLITS["train"])
        if leaked:
            raise ValueError(f"real_patients {sorted(leaked)} are not training patients "
                             f"({SPLITS['train']})")
        if min(self.steps, self.batch_size, self.cg_maxiter, self.checkpoint_every,
               self.progress_every) < 1 or min(self.start_iterations,
                                                self.warm_iterations) < 0:
            raise ValueError("steps, batch_size, cg_maxiter, checkpoint_every and "
                             "progress_every must be >= 1, iterations >= 0")
        if self.hessian_weight < 0 or not 0 < self.hessian_patch <= self.image_size:
            raise ValueError(f"hessian_weight must be >= 0 (got {self.hessian_weight}) and "
                             f"hessian_patch in 1..image_size (got {self.hessian_patch})")

    def to_dict(self) -> dict:
        """JSON form (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> PnPFinetuneConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fine-tuning settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def training_slices_hu(config: PnPFinetuneConfig) -> list[np.ndarray]:
    """``slices_per_patient`` slices of each of ``config.real_patients`` on the scan grid
    (HU, ``image_size²`` at ``pixel_mm``), evenly spaced over each patient's middle 80 %."""
    chosen = []
    for patient in config.real_patients:
        volume = list(patient_slices_hu([patient], pixel_mm=config.pixel_mm,
                                        size=config.image_size))
        picks = np.rint(np.linspace(0.1, 0.9, config.slices_per_patient) * (len(volume) - 1))
        chosen += [volume[k] for k in picks.astype(int)]
    return chosen


def finetune_on_pnp(
    weights_path: str | Path,
    out_path: str | Path,
    config: PnPFinetuneConfig = PnPFinetuneConfig(),
    *,
    device: str = "cpu",
    resume: bool = True,
    progress: Callable[[dict], object] | None = None,
) -> dict:
    """Fine-tune the Prox-denoiser of ``weights_path`` on PnP iterates; write ``out_path``.

    Args:
        weights_path: a Prox-denoiser weights file whose card has a dose rule for
            ``config.solver``; it is not modified.
        out_path: the fine-tuned weights (and card); checkpoints beside it make a
            rerun of the same command resume.
        config: data and optimization settings.
        device: ``"cpu"`` or ``"cuda"``.
        resume: continue from the checkpoint when there is one.
        progress: called with ``{"event": "step", "step", "total_steps", "loss_hu2",
            "seconds"}`` (and ``"hessian_norm_max"`` with the penalty) every
            ``progress_every`` steps, ``{"event": "checkpoint", ...}``
            after each checkpoint and ``{"event": "done", ...}`` at the end.

    Returns:
        The card's ``pnp_finetune`` record (config, data, device, steps, seconds,
        per-step ``loss_hu2`` history).

    Raises:
        ValueError: the weights are not a Prox-denoiser's, its card has no dose rule
            for the solver, or a checkpoint of another config is in the way.
    """
    torch_device = training_device(device)
    tensors, card = load_weights(weights_path)
    if card.get("model") != "prox":
        raise ValueError(f"{weights_path} holds a {card.get('model')!r} model; "
                         "fine-tuning on PnP needs a Prox-denoiser ('prox')")
    prior = ProxDenoiserPrior.from_weights(tensors, card, str(weights_path), device=torch_device)
    rule = learned_parameters(prior, config.solver)
    if rule is None:
        raise ValueError(f"model card of {weights_path} has no dose rule for {config.solver}: "
                         "fine-tuning runs PnP with it")
    network = prior.network.requires_grad_(True)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    geometry = ScanGeometry.clinical_fan((config.image_size,) * 2, config.pixel_mm,
                                         config.n_views)
    op = Tomography(geometry, torch_device)
    scans = scan_set(op, config.solver, config.photons, phantom_seeds=config.phantom_seeds,
                     real_slices_hu=training_slices_hu(config))
    sigma, weight = rule.settings(scans.variance)
    sigma, tau = sigma.to(torch_device), data_step(weight, sigma).to(torch_device)
    settings = StepSettings(cg_tol=1e-6, cg_maxiter=config.cg_maxiter, enforce_nonnegative=True,
                            preconditioner="fourier", relaxation=DEFAULT_RELAXATION)
    iterate = SPLITTINGS[config.solver].iteration

    def advance(index: torch.Tensor, iterations: int) -> tuple[torch.Tensor, ...]:
        state = scans.get(index)
        with torch.no_grad():
            for _ in range(iterations):
                state = iterate(scans.data(index), prior, state, sigma[index], tau[index],
                                settings)
        scans.put(index, state)
        return state

    checkpoint = Checkpoint(out_path)
    step, elapsed, history = 0, 0.0, []
    if resume and checkpoint.exists():
        saved = checkpoint.load(network, optimizer, generator, config.to_dict())
        step, elapsed, history = saved["step"], saved["elapsed_s"], saved["history"]
        extra = checkpoint.load_extra()
        scans.put(torch.arange(len(scans)),
                  tuple(extra[f"state.{k}"].to(torch_device) for k in range(len(scans.state))))
    else:
        for first in range(0, len(scans), 8):
            advance(torch.arange(first, min(first + 8, len(scans))), config.start_iterations)
    penalty = (_hessian_penalty(prior, config, generator) if config.hessian_weight > 0
               else None)
    start = time.perf_counter() - elapsed
    while step < config.steps:
        index = torch.randperm(len(scans), generator=generator)[:config.batch_size]
        losses = _jfb_step(scans, index, advance(index, config.warm_iterations), prior,
                           iterate, sigma[index], tau[index], settings, optimizer, penalty)
        step += 1
        history.append({"step": step, **losses,
                        "seconds": round(time.perf_counter() - start, 1)})
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint.save(network, optimizer, generator, config.to_dict(),
                            {"step": step, "elapsed_s": time.perf_counter() - start,
                             "history": history},
                            extra={f"state.{k}": part for k, part in enumerate(scans.state)})
            if progress is not None:
                progress({"event": "checkpoint", "step": step, "total_steps": config.steps})
        if progress is not None and step % config.progress_every == 0:
            progress({"event": "step", "step": step, "total_steps": config.steps,
                      **losses, "seconds": history[-1]["seconds"]})
    record = {
        "method": "restarted JFB on PnP iterates (ctpnp.train.pnp_finetune)",
        "from_weights": Path(weights_path).name,
        "from_sha256": card["sha256"],
        "config": config.to_dict(),
        "data": {"patients": corpus_record(config.real_patients),
                 "phantom_seeds": list(config.phantom_seeds),
                 "scans": len(scans)},
        "device": describe_device(torch_device),
        "steps": step,
        "seconds": round(time.perf_counter() - start, 1),
        "history": history,
        "versions": package_versions(),
    }
    kept = {k: v for k, v in card.items() if k not in _STORED}
    save_weights(out_path, {k: v.detach() for k, v in network.state_dict().items()},
                 {**kept, "pnp_finetune": record})
    if progress is not None:
        progress({"event": "done", "step": step, "total_steps": config.steps,
                  "seconds": record["seconds"]})
    return record


def _jfb_step(scans: ScanSet, index: torch.Tensor, state: tuple[torch.Tensor, ...],
              prior: ProxDenoiserPrior, iterate, sigma: torch.Tensor, tau: torch.Tensor,
              settings: StepSettings, optimizer: torch.optim.Optimizer,
              penalty: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, float]] | None,
              ) -> dict[str, float]:
    """One back-propagated iteration from ``state`` (the scans ``index``), one Adam step on the
    network (on the loss plus ``penalty`` of the new iterate, when given); stores the new
    state and returns ``{"loss_hu2"}`` (mean over the batch's pixels) and, with a penalty,
    ``"hessian_norm_max"``."""
    with torch.enable_grad():
        new = iterate(scans.data(index), prior, state, sigma, tau, settings)
        loss = (physics.mu_to_hu(new[1]) - scans.reference_hu[index]).pow(2).mean()
        record = {"loss_hu2": float(loss.detach())}
        if penalty is not None:
            extra, record["hessian_norm_max"] = penalty(new[1].detach(), sigma)
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
    optimizer.step()
    scans.put(index, new)
    return record


def _hessian_penalty(prior: ProxDenoiserPrior, config: PnPFinetuneConfig,
                     generator: torch.Generator
                     ) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, float]]:
    """``penalty(x_mu, sigma_mu)``: ``hessian_weight * mean_b max(0, ||Hess(gamma g)|| -
    hessian_target)`` at one random ``hessian_patch``² crop of each square image ``x_mu``
    ``(B, 1, N, N)`` (1/mm) at its noise level ``sigma_mu`` ``(B,)`` (1/mm), differentiable
    in the network's weights, and the largest norm."""
    size = config.hessian_patch

    def penalty(x_mu: torch.Tensor, sigma_mu: torch.Tensor) -> tuple[torch.Tensor, float]:
        corners = torch.randint(0, x_mu.shape[-1] - size + 1, (x_mu.shape[0], 2),
                                generator=generator).tolist()
        crops = torch.stack([image[:, r:r + size, c:c + size]
                             for image, (r, c) in zip(x_mu, corners, strict=True)])
        u = mu_to_unit(crops)
        norm = hessian_spectral_norm(prior.network, u, prior.sigma_unit(sigma_mu, u),
                                     config.hessian_power_iters, create_graph=True,
                                     generator=generator)
        excess = (norm - config.hessian_target).clamp(min=0.0).mean()
        return config.hessian_weight * excess, float(norm.detach().max())

    return penalty
