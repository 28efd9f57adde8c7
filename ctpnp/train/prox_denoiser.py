"""Train a gradient-step Prox-denoiser: L2 over a range of noise levels, then the Hessian penalty.

Training patches come from generated phantoms (``train_seeds``) and patients of
the real-CT corpus (``real_patients``, :mod:`ctpnp.data`); validation patches
from other phantom seeds and patients (``val_seeds``, ``val_patients``).
Stage 1 minimises ``||D_sigma(u + sigma n) - u||^2`` (mean per pixel) with
``sigma`` uniform in the configured HU range, its learning rate constant or
decaying from ``l2_lr`` to ``l2_lr_final`` along a cosine. Stage 2 adds ``penalty_weight *
max(||Hess g_sigma||, 1 - eps)`` (power iteration by double backprop,
:func:`ctpnp.priors.prox_denoiser.hessian_spectral_norm`) and stops as soon as
the estimated ``||Hess g_sigma||`` on fixed validation patches is below
``stop_below`` (< 1), which makes ``D_sigma`` a proximal operator; with
``keep_best`` it runs every stage-2 step instead and keeps the weights of the
validation check with the best PSNR among those below ``stop_below``. Checkpoints
and resume use :mod:`ctpnp.train.checkpoint`; the result is a weights file with
its model card (:mod:`ctpnp.priors.weights`) that ``ctpnp.priors.load`` reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ctpnp.priors.normalization import HU_PER_UNIT
from ctpnp.priors.prox_denoiser import GradientStepDenoiser, hessian_spectral_norm
from ctpnp.priors.unet import UNetConfig
from ctpnp.priors.weights import save_weights
from ctpnp.train.checkpoint import Checkpoint, load_initial_weights
from ctpnp.train.data import (
    NORMALIZATION_RECORD,
    PatchSampler,
    SliceSplit,
    corpus_record,
    split_slices_hu,
    training_data_record,
)
from ctpnp.train.device import describe_device, training_device
from ctpnp.train.lpn import psnr_unit_db
from ctpnp.versions import package_versions

__all__ = [
    "ProxTrainConfig",
    "train_prox_denoiser",
    "validation_patches",
]

ProgressCallback = Callable[[dict], None]



_SEQUENCES = ("sigma_hu_range", "train_seeds", "val_seeds", "real_patients", "val_patients")


@dataclass(frozen=True)
class ProxTrainConfig(SliceSplit):
    """Everything that defines a Prox-denoiser training run (stored in checkpoints and the
    card): the slices and augmentation of :class:`~ctpnp.train.data.SliceSplit` (16
    training phantoms by default), and

    Attributes:
        unet: architecture of the residual network.
        patch_size: training patch side (pixels).
        batch_size: patches per L2 step.
        penalty_batch: patches (of the same batch) the Hessian penalty is computed on.
        sigma_hu_range: noise std range (HU), sampled uniformly.
        sigma_ref_hu: level at which the prior reports its potential (HU).
        l2_steps: stage-1 optimizer steps (lr ``l2_lr``, decaying to ``l2_lr_final``
            along a cosine when that is given).
        finetune_steps: maximal stage-2 steps (lr ``finetune_lr``).
        penalty_weight: weight of ``max(||Hess g||, 1 - eps)``.
        eps: penalty margin.
        power_iters: power iterations per penalty evaluation.
        check_every: stage-2 steps between validation Hessian checks.
        stop_below: stage 2 ends once the validation max ``||Hess g||`` is below this.
        keep_best: run all ``finetune_steps`` and keep the weights of the check
            with the best validation PSNR whose max ``||Hess g||`` is below
            ``stop_below`` (the last weights when no check was).
        val_power_iters: power iterations of the validation check.
        n_val_patches: validation patches (noise levels spread over the range).
        checkpoint_every / progress_every: steps between checkpoints / reports.
    """

    unet: UNetConfig = field(default_factory=UNetConfig)
    patch_size: int = 32
    batch_size: int = 16
    penalty_batch: int = 4
    sigma_hu_range: tuple[float, float] = (10.0, 150.0)
    sigma_ref_hu: float = 50.0
    l2_steps: int = 1500
    l2_lr: float = 1e-3
    l2_lr_final: float | None = None
    finetune_steps: int = 400
    finetune_lr: float = 2e-4
    penalty_weight: float = 1e-3
    eps: float = 0.1
    power_iters: int = 6
    check_every: int = 25
    stop_below: float = 0.95
    keep_best: bool = False
    val_power_iters: int = 20
    n_val_patches: int = 32
    train_seeds: tuple[int, ...] = tuple(range(16))
    checkpoint_every: int = 100
    progress_every: int = 20

    @property
    def sigma_range_unit(self) -> tuple[float, float]:
        """``sigma_hu_range`` in normalized intensity."""
        return (self.sigma_hu_range[0] / HU_PER_UNIT, self.sigma_hu_range[1] / HU_PER_UNIT)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["unet"] = self.unet.to_dict()
        for key in _SEQUENCES:
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ProxTrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["unet"] = UNetConfig.from_dict(d["unet"])
        for key in _SEQUENCES:
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def validation_patches(
    config: ProxTrainConfig, n: int, seed: int = 12345
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(clean, noisy, sigma_unit)`` patches ``(n, 1, p, p)``, ``(n,)`` of the validation set.

    Noise levels are spread evenly over the configured range; everything is
    drawn from ``seed`` so repeated calls give the same patches.
    """
    gen = torch.Generator().manual_seed(seed)
    clean = PatchSampler(split_slices_hu(config, "validation"), config.patch_size, gen).sample(n)
    sigma = torch.linspace(*config.sigma_range_unit, n)
    noisy = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=gen)
    return clean, noisy, sigma


def validate(
    network: GradientStepDenoiser, config: ProxTrainConfig, val: tuple[torch.Tensor, ...]
) -> dict[str, float]:
    """Validation PSNR (dB, peak 1 on normalized intensity) and max estimated ``||Hess g||``."""
    clean, noisy, sigma = val
    was_training = network.training
    network.eval()
    denoised = network(noisy, sigma)
    hess = hessian_spectral_norm(
        network, noisy, sigma, config.val_power_iters, generator=torch.Generator().manual_seed(7)
    )
    network.train(was_training)
    return {
        "val_psnr_db": psnr_unit_db(denoised, clean),
        "val_noisy_psnr_db": psnr_unit_db(noisy, clean),
        "val_psnr_db_by_sigma_hu": psnr_by_noise_band(denoised, clean, sigma),
        "val_max_hessian_norm": float(hess.max()),
    }


def psnr_by_noise_band(
    denoised: torch.Tensor, clean: torch.Tensor, sigma_unit: torch.Tensor, bands: int = 3
) -> dict[str, float]:
    """PSNR (dB, peak 1) of ``(n, 1, p, p)`` patches per band of their noise levels ``(n,)``.

    The patches, sorted by ``sigma_unit``, are split into ``bands`` groups of
    (nearly) equal size, keyed ``"<lowest>-<highest> HU"``: a network that is
    good on average can still be weak at the low levels that PnP at a high
    dose uses, and the mean over all levels hides it.
    """
    order = torch.argsort(sigma_unit)
    out: dict[str, float] = {}
    for idx in order.tensor_split(bands):
        if len(idx):
            lo_hu, hi_hu = (float(sigma_unit[idx[k]]) * HU_PER_UNIT for k in (0, -1))
            out[f"{lo_hu:.0f}-{hi_hu:.0f} HU"] = psnr_unit_db(denoised[idx], clean[idx])
    return out


def train_prox_denoiser(
    config: ProxTrainConfig,
    out_path: str | Path,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    init_from: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Train a Prox-denoiser on generated phantoms and write ``out_path`` with its model card.

    Args:
        config: the run.
        out_path: final weights path; checkpoints go beside it.
        progress: called with dicts (``event`` = ``"step"``, ``"validation"``,
            ``"checkpoint"`` or ``"done"`` ...). Library code prints nothing.
        resume: continue from an existing checkpoint of the same config.
        init_from: start from this Prox-denoiser weights file (same
            architecture), e.g. to fine-tune an L2-trained model further with
            ``l2_steps=0``; its training record is kept in the new card.
        device: ``"cpu"`` or ``"cuda[:N]"``. Patches and noise are drawn on the
            CPU from the seeded generator, so a run is the same data on any device.

    Returns:
        ``out_path``.
    """
    out_path = Path(out_path)
    report = progress or (lambda _event: None)
    device = training_device(device)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        network = GradientStepDenoiser(config.unet)
    previous = load_initial_weights(network, init_from) if init_from is not None else None
    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.l2_lr)
    generator = torch.Generator().manual_seed(config.seed)
    ckpt = Checkpoint(out_path)
    state = {"step": 0, "elapsed_s": 0.0, "history": []}
    best: dict[str, torch.Tensor] = {}  # weights of the best admissible check (keep_best)
    if resume and ckpt.exists():
        state = ckpt.load(network, optimizer, generator, config.to_dict())
        best = ckpt.load_extra()

    sampler = PatchSampler(
        split_slices_hu(config), config.patch_size, generator,
        jitter_scale=config.jitter_scale, jitter_offset_hu=config.jitter_offset_hu,
    )
    val = tuple(t.to(device) for t in validation_patches(config, config.n_val_patches))
    lo, hi = config.sigma_range_unit
    total = config.l2_steps + config.finetune_steps

    network.train()
    start = time.perf_counter() - state["elapsed_s"]
    step = state["step"]
    while step < total and not _converged(state, config):
        finetune = step >= config.l2_steps
        if finetune and (step - config.l2_steps) % config.check_every == 0:
            metrics = validate(network, config, val)
            state["history"].append({"step": step, **metrics})
            report({"event": "validation", "step": step, **metrics})
            if _best_check(state["history"], config) == state["history"][-1]:
                best = _cpu_copy(network)
            if _converged(state, config):
                break
        for group in optimizer.param_groups:
            group["lr"] = config.finetune_lr if finetune else _l2_lr(config, step)
        clean = sampler.sample(config.batch_size)
        sigma = lo + (hi - lo) * torch.rand(config.batch_size, generator=generator)
        noisy = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=generator)
        clean, sigma, noisy = clean.to(device), sigma.to(device), noisy.to(device)
        loss = (network(noisy, sigma, create_graph=True) - clean).pow(2).mean()
        record = {"mse": loss.item()}
        if finetune:
            k = config.penalty_batch
            hess = hessian_spectral_norm(
                network, noisy[:k], sigma[:k], config.power_iters, create_graph=True,
                generator=generator,
            )
            loss = loss + config.penalty_weight * hess.clamp(min=1.0 - config.eps).mean()
            record["hessian_norm_max"] = float(hess.detach().max())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        step += 1
        state.update(step=step, elapsed_s=time.perf_counter() - start)
        if step % config.progress_every == 0:
            report({"event": "step", "step": step, "total_steps": total, "finetune": finetune,
                    **record, "elapsed_s": state["elapsed_s"]})
        if step % config.checkpoint_every == 0:
            ckpt.save(network, optimizer, generator, config.to_dict(), state, best)
            report({"event": "checkpoint", "step": step, "path": str(ckpt.weights_path)})

    final = validate(network, config, val)
    kept = None
    if config.keep_best:
        state["history"].append({"step": step, **final})
        kept = _best_check(state["history"], config)
        if kept is not None and kept["step"] != step:
            network.load_state_dict(best)
            final = validate(network, config, val)
        report({"event": "kept", "step": None if kept is None else kept["step"], **final})
    card = _model_card(config, state, final, previous, describe_device(device), kept)
    save_weights(out_path, network.state_dict(), card)
    report({"event": "done", "path": str(out_path), **final, "elapsed_s": state["elapsed_s"]})
    return out_path


def _l2_lr(config: ProxTrainConfig, step: int) -> float:
    """Stage-1 learning rate at ``step``: ``l2_lr``, or a cosine from it to ``l2_lr_final``."""
    if config.l2_lr_final is None:
        return config.l2_lr
    t = step / max(config.l2_steps - 1, 1)
    span = config.l2_lr - config.l2_lr_final
    return config.l2_lr_final + 0.5 * span * (1 + math.cos(math.pi * t))


def _best_check(history: list[dict], config: ProxTrainConfig) -> dict | None:
    """The validation record with the best PSNR among those below ``stop_below`` (first of ties)."""
    admissible = [h for h in history if h["val_max_hessian_norm"] < config.stop_below]
    return max(admissible, key=lambda h: h["val_psnr_db"], default=None)


def _cpu_copy(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


def _converged(state: dict, config: ProxTrainConfig) -> bool:
    last = state["history"][-1] if state["history"] else {}
    return (
        not config.keep_best
        and state["step"] >= config.l2_steps
        and last.get("step") == state["step"]
        and last.get("val_max_hessian_norm", float("inf")) < config.stop_below
    )


def _model_card(
    config: ProxTrainConfig, state: dict, final: dict, previous: dict | None, device: dict,
    kept: dict | None,
) -> dict:
    before = previous or {}
    before_s = before.get("total_wall_time_s", before.get("wall_time_s", 0.0))
    return {
        "model": "prox",
        "architecture": config.unet.to_dict(),
        "sigma_range_unit": list(config.sigma_range_unit),
        "sigma_range_hu": list(config.sigma_hu_range),
        "sigma_ref_unit": config.sigma_ref_hu / HU_PER_UNIT,
        "normalization": NORMALIZATION_RECORD,
        "data": training_data_record(config, extra_slices=0),
        "training": {
            "steps": state["step"],
            "l2_steps": config.l2_steps,
            "finetune_steps_run": max(state["step"] - config.l2_steps, 0),
            "wall_time_s": round(state["elapsed_s"], 1),
            "total_wall_time_s": round(state["elapsed_s"] + before_s, 1),
            "device": device,
            "config": config.to_dict(),
            "history": state["history"],
            "kept_step": state["step"] if kept is None else kept["step"],
            "initialized_from": previous,
        },
        "validation": {
            "seeds": list(config.val_seeds),
            "patients": corpus_record(config.val_patients),
            "patches": config.n_val_patches,
            "patch_size": config.patch_size,
            "sigma": "evenly spread over sigma_range_unit",
            "metric": "PSNR (dB, peak 1 on normalized intensity) of D_sigma on the noisy "
                      "patches; max over patches of the power-iteration estimate of "
                      f"||Hess g_sigma|| ({config.val_power_iters} iterations)",
            **final,
        },
        "ctpnp_version": package_versions()["ctpnp"],
    }
