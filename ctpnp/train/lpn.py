"""Train a learned proximal network on noisy patches: L1 pre-training, then proximal matching.

:func:`train_lpn` runs the stages of an :class:`LPNTrainConfig`, checkpoints
(safetensors + JSON state, see :mod:`ctpnp.train.checkpoint`) so that an
interrupted run resumes where it stopped, reports progress through a callback
and finally writes a weights file with its model card
(:mod:`ctpnp.priors.weights`) that ``ctpnp.priors.load(path)`` reads.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ctpnp.data import patient_slices_hu
from ctpnp.priors.icnn import ICNNConfig
from ctpnp.priors.lpn import LPN, LPNPrior
from ctpnp.priors.normalization import HU_PER_UNIT, hu_to_unit
from ctpnp.priors.weights import save_weights
from ctpnp.train.checkpoint import Checkpoint, load_initial_weights
from ctpnp.train.data import (
    NORMALIZATION_RECORD,
    PatchSampler,
    SliceSplit,
    corpus_record,
    phantom_slices_hu,
    piecewise_smooth_hu,
    training_data_record,
)
from ctpnp.train.device import describe_device, training_device
from ctpnp.train.losses import l1_loss, proximal_matching_loss
from ctpnp.versions import package_versions

__all__ = ["LPNTrainConfig", "Stage", "train_lpn", "training_slices", "validation_slices"]

ProgressCallback = Callable[[dict], None]

_SEQUENCES = ("train_seeds", "val_seeds", "real_patients", "val_patients")

VALIDATION_METRIC = (
    "PSNR (dB, peak 1 on normalized intensity = the [-1000, 1000] HU window) of the whole-image "
    "prox on Gaussian noise of std sigma_unit (fixed noise seed), mean over validation slices"
)


@dataclass(frozen=True)
class Stage:
    """One training stage.

    Attributes:
        loss: ``"l1"`` or ``"proximal_matching"``.
        steps: optimizer steps in this stage.
        lr: Adam learning rate.
        gamma_rel: proximal matching width relative to the noise norm:
            ``gamma = gamma_rel * sigma * sqrt(p^2)`` (unused for L1).
    """

    loss: Literal["l1", "proximal_matching"]
    steps: int
    lr: float
    gamma_rel: float = 1.0


@dataclass(frozen=True)
class LPNTrainConfig(SliceSplit):
    """Everything that defines an LPN training run (stored in checkpoints and the model card):
    the slices and augmentation of :class:`~ctpnp.train.data.SliceSplit`, and

    Attributes:
        icnn: network architecture.
        alpha: strong-convexity weight of ``psi``.
        stride: whole-image tiling stride (``None``: half the patch size).
        sigma_unit: Gaussian noise std on normalized intensities (HU window
            ``[-1000, 1000]`` -> ``[0, 1]``).
        batch_size: patches per step.
        stages: the schedule (L1 first, then proximal matching with shrinking gamma).
        phantoms: ``"anatomy"`` (``ctpnp.phantoms.random_anatomy``) or
            ``"piecewise_smooth"`` (:func:`ctpnp.train.data.piecewise_smooth_hu`).
        val_slices_per_patient: evenly spaced slices of each validation patient
            (whole-image prox).
        checkpoint_every: steps between checkpoints.
        progress_every: steps between progress reports.
    """

    icnn: ICNNConfig = field(default_factory=ICNNConfig)
    alpha: float = 0.01
    stride: int | None = None
    sigma_unit: float = 0.025
    batch_size: int = 32
    stages: tuple[Stage, ...] = (
        Stage("l1", 4000, 1e-3),
        Stage("proximal_matching", 1600, 2e-4, 3.2),
        Stage("proximal_matching", 1400, 1e-4, 1.6),
        Stage("proximal_matching", 1000, 5e-5, 0.8),
    )
    phantoms: Literal["anatomy", "piecewise_smooth"] = "anatomy"
    val_slices_per_patient: int = 2
    checkpoint_every: int = 200
    progress_every: int = 20

    @property
    def total_steps(self) -> int:
        """Sum of the stage lengths."""
        return sum(s.steps for s in self.stages)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["icnn"] = self.icnn.to_dict()
        d["stages"] = [asdict(s) for s in self.stages]
        for key in _SEQUENCES:
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LPNTrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["icnn"] = ICNNConfig.from_dict(d["icnn"])
        d["stages"] = tuple(Stage(**s) for s in d["stages"])
        for key in _SEQUENCES:
            if key in d:  # cards written before corpus training have no patient lists
                d[key] = tuple(d[key])
        return cls(**d)

    def stage_at(self, step: int) -> Stage:
        """The stage that optimizer step ``step`` (0-based) belongs to."""
        ends = itertools.accumulate(s.steps for s in self.stages)
        for stage, end in zip(self.stages, ends, strict=True):
            if step < end:
                return stage
        raise IndexError(f"step {step} beyond the schedule ({self.total_steps} steps)")


def _phantom_slices(config: LPNTrainConfig, seeds: Iterable[int]) -> list[np.ndarray]:
    if config.phantoms == "anatomy":
        return list(phantom_slices_hu(seeds, config.slice_size, config.pixel_mm))
    return [piecewise_smooth_hu(s, config.slice_size) for s in seeds]


def training_slices(config: LPNTrainConfig) -> list[np.ndarray]:
    """The run's training slices (HU): phantoms, then every slice of the training patients."""
    return [*_phantom_slices(config, config.train_seeds),
            *patient_slices_hu(config.real_patients)]


def validation_slices(config: LPNTrainConfig) -> list[np.ndarray]:
    """The run's validation slices (HU): phantoms, then ``val_slices_per_patient`` evenly
    spaced slices of each validation patient."""
    chosen = []
    for patient in config.val_patients:
        slices = list(patient_slices_hu([patient]))
        picks = np.linspace(0, len(slices) - 1, config.val_slices_per_patient + 2)[1:-1]
        chosen += [slices[k] for k in picks.round().astype(int)]
    return [*_phantom_slices(config, config.val_seeds), *chosen]


def psnr_unit_db(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    """PSNR (dB) with peak 1 on normalized intensities (i.e. the 2000 HU window)."""
    mse = float((estimate - clean).pow(2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-20))


def validate(
    network: LPN, config: LPNTrainConfig, clean_unit: list[torch.Tensor]
) -> dict[str, float]:
    """Whole-image denoising PSNR (dB, peak 1) at ``sigma_unit`` on validation slices.

    Noise is drawn from a fixed seed so every call sees the same noisy images.
    """
    was_training = network.training
    prior = LPNPrior(network, config.sigma_unit, stride=config.stride)
    gen = torch.Generator().manual_seed(12345)
    noisy_db, denoised_db = [], []
    for clean in clean_unit:
        x = clean[None, None]
        noisy = x + config.sigma_unit * torch.randn(x.shape, generator=gen).to(x.device)
        noisy_db.append(psnr_unit_db(noisy, x))
        denoised_db.append(psnr_unit_db(prior.image_prox(noisy).detach(), x))
    network.train(was_training)
    return {
        "val_psnr_db": float(np.mean(denoised_db)),
        "val_noisy_psnr_db": float(np.mean(noisy_db)),
    }


def _loss(stage: Stage, pred: torch.Tensor, clean: torch.Tensor, sigma: float) -> torch.Tensor:
    if stage.loss == "l1":
        return l1_loss(pred, clean)
    gamma = stage.gamma_rel * sigma * math.sqrt(clean[0].numel())
    return proximal_matching_loss(pred, clean, gamma)


def train_lpn(
    config: LPNTrainConfig,
    out_path: str | Path,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    extra_slices_hu: Iterable[np.ndarray] = (),
    device: str | torch.device = "cpu",
    init_from: str | Path | None = None,
) -> Path:
    """Train an LPN and write ``out_path`` (safetensors) with its model card ``.json``.

    Args:
        config: the run.
        out_path: final weights path; checkpoints go beside it
            (``<stem>.ckpt.safetensors`` / ``.ckpt.json``).
        progress: called with dicts (``event`` = ``"step"``, ``"validation"``,
            ``"checkpoint"`` or ``"done"``, plus ``step``, ``total_steps``,
            ``loss``, ``elapsed_s`` ...). Library code prints nothing.
        resume: continue from an existing checkpoint of the same config.
        extra_slices_hu: additional 2D HU slices (e.g. a user's normal-dose
            series, ``ctpnp.io.read_ct_series(folder).hu``) mixed into training.
        device: ``"cpu"`` or ``"cuda[:N]"``. Patches and noise are drawn on the
            CPU from the seeded generator, so a run is the same data on any device.
        init_from: start from this LPN weights file (same architecture) instead
            of the seeded initialization; its card's training record is kept in
            the new card (``training.initialized_from``). A resumed run starts
            from its checkpoint.

    Returns:
        ``out_path``.
    """
    out_path = Path(out_path)
    report = progress or (lambda _event: None)
    device = training_device(device)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        network = LPN(config.icnn, config.alpha)
    previous = load_initial_weights(network, init_from) if init_from is not None else None
    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.stages[0].lr)
    generator = torch.Generator().manual_seed(config.seed)
    ckpt = Checkpoint(out_path)
    state = {"step": 0, "elapsed_s": 0.0, "history": []}
    if resume and ckpt.exists():
        state = ckpt.load(network, optimizer, generator, config.to_dict())

    extra = list(extra_slices_hu)
    sampler = PatchSampler(
        training_slices(config) + extra, config.icnn.patch_size, generator,
        jitter_scale=config.jitter_scale, jitter_offset_hu=config.jitter_offset_hu,
    )
    val_clean = [hu_to_unit(torch.as_tensor(s)).to(device) for s in validation_slices(config)]

    network.train()
    start = time.perf_counter() - state["elapsed_s"]
    stage_ends = set(itertools.accumulate(s.steps for s in config.stages))
    for step in range(state["step"], config.total_steps):
        stage = config.stage_at(step)
        for group in optimizer.param_groups:
            group["lr"] = stage.lr
        clean = sampler.sample(config.batch_size)
        noisy = clean + config.sigma_unit * torch.randn(clean.shape, generator=generator)
        clean, noisy = clean.to(device), noisy.to(device)
        loss = _loss(stage, network(noisy), clean, config.sigma_unit)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        network.clamp_weights()

        done = step + 1
        state.update(step=done, elapsed_s=time.perf_counter() - start)
        if done % config.progress_every == 0:
            report({"event": "step", "step": done, "total_steps": config.total_steps,
                    "stage": stage.loss, "loss": loss.item(), "elapsed_s": state["elapsed_s"]})
        if done in stage_ends:
            metrics = validate(network, config, val_clean)
            state["history"].append({"step": done, **metrics})
            report({"event": "validation", "step": done, **metrics})
        if done % config.checkpoint_every == 0 or done == config.total_steps:
            ckpt.save(network, optimizer, generator, config.to_dict(), state)
            report({"event": "checkpoint", "step": done, "path": str(ckpt.weights_path)})

    final = state["history"][-1] if state["history"] else validate(network, config, val_clean)
    card = _model_card(network, config, state, final, len(extra), describe_device(device),
                       previous)
    save_weights(out_path, network.state_dict(), card)
    report({"event": "done", "path": str(out_path), **final, "elapsed_s": state["elapsed_s"]})
    return out_path


def _model_card(
    network: LPN, config: LPNTrainConfig, state: dict, final: dict, n_extra_slices: int,
    device: dict, previous: dict | None,
) -> dict:
    stride = config.stride or max(config.icnn.patch_size // 2, 1)
    return {
        "model": "lpn",
        "architecture": {**network.architecture(), "stride": stride},
        "sigma_train_unit": config.sigma_unit,
        "sigma_train_hu": config.sigma_unit * HU_PER_UNIT,
        "normalization": NORMALIZATION_RECORD,
        "data": training_data_record(config, config.phantoms, extra_slices=n_extra_slices),
        "training": {
            "steps": state["step"],
            "wall_time_s": round(state["elapsed_s"], 1),
            "device": device,
            "config": config.to_dict(),
            "history": state["history"],
            "initialized_from": previous,
        },
        "validation": {"seeds": list(config.val_seeds),
                       "patients": corpus_record(config.val_patients),
                       "slices_per_patient": config.val_slices_per_patient,
                       "metric": VALIDATION_METRIC, **final},
        "ctpnp_version": package_versions()["ctpnp"],
    }
