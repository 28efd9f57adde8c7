"""Fit the Gaussian-mixture patch prior (:mod:`ctpnp.priors.gmm`) by expectation-maximization.

The training patches (real CT of the corpus's training patients and textured
phantoms, flipped, rotated and contrast-jittered by
:class:`~ctpnp.train.data.PatchSampler`) are drawn once from the run's seed;
each EM iteration is a pass over all of them with full covariances (float64
sums, float32 projections), and a small variance floor keeps every covariance
regular. A component that ends up with fewer patches than dimensions is
re-seeded at a random patch with the data's covariance. After the last
iteration each covariance is cut to its ``rank`` leading eigenvectors plus one
isotropic variance (:meth:`~ctpnp.priors.gmm.PatchGMM.from_covariances`).

The state after every iteration is kept in ``<out>.ckpt.safetensors`` and
``<out>.ckpt.json`` (no pickle); the same call resumes from them.

:func:`join_mixtures` puts separately fitted mixtures side by side,
``p = sum_j share_j p_j``: a part fitted on one kind of data (real CT, textured
phantoms) keeps its components as they are, whatever the other parts hold.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ctpnp.atomic import staged_file
from ctpnp.priors.gmm import GMMPatchPrior, PatchGMM, patch_log_joint
from ctpnp.priors.normalization import HU_PER_UNIT
from ctpnp.priors.weights import load_weights, save_weights
from ctpnp.train.data import (
    NORMALIZATION_RECORD,
    PatchSampler,
    SliceSplit,
    corpus_record,
    split_slices_hu,
    training_data_record,
)
from ctpnp.train.device import describe_device
from ctpnp.versions import package_versions

__all__ = ["GMMTrainConfig", "fit_patch_gmm", "join_mixtures", "largest_jacobian_eigenvalue",
           "validate_gmm"]

_CHUNK = 8192  # patches per block of an E-step


@dataclass(frozen=True)
class GMMTrainConfig(SliceSplit):
    """Everything that defines a GMM fit (stored in the checkpoint and the card): the
    slices and augmentation of :class:`~ctpnp.train.data.SliceSplit` (contrast ±5 %,
    offset ±20 HU by default), and

    Attributes:
        patch_size: patch side ``p`` (pixels); ``d = p^2``.
        components: mixture size ``K``.
        rank: eigenvectors kept per covariance in the shipped model.
        stride: patch grid stride of the prior built from it (divides ``patch_size``).
        n_patches: training patches (drawn once).
        iterations: maximal EM passes.
        tol_nats: stop once the mean log-likelihood per patch gains less than this.
        variance_floor_hu: std (HU) added in every direction of every covariance.
        sigma_ref_hu: noise level at which the prior reports its potential (HU).
        n_val_crops / val_crop_px: validation crops and their side (pixels), noise spread
            over ``val_sigma_hu`` (HU).
    """

    patch_size: int = 8
    components: int = 64
    rank: int = 16
    stride: int = 2
    n_patches: int = 200_000
    iterations: int = 40
    tol_nats: float = 0.02
    variance_floor_hu: float = 2.0
    sigma_ref_hu: float = 50.0
    n_val_crops: int = 32
    val_crop_px: int = 64
    val_sigma_hu: tuple[float, float] = (10.0, 150.0)
    jitter_scale: float = 0.05
    jitter_offset_hu: float = 20.0

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _sampler(config: GMMTrainConfig, which: str, size: int, seed: int) -> PatchSampler:
    """Patches of ``size`` pixels of the ``"train"`` (augmented) or ``"validation"`` set."""
    jitter = which == "train"
    return PatchSampler(split_slices_hu(config, which), size, torch.Generator().manual_seed(seed),
                        jitter_scale=config.jitter_scale if jitter else 0.0,
                        jitter_offset_hu=config.jitter_offset_hu if jitter else 0.0)


def _training_patches(config: GMMTrainConfig) -> torch.Tensor:
    """``(n_patches, d)`` float64 training patches (normalized intensity), augmented."""
    sampler = _sampler(config, "train", config.patch_size, config.seed)
    n = config.n_patches
    return torch.cat([sampler.sample(min(4096, n - a)).flatten(1)
                      for a in range(0, n, 4096)]).double()


def _full_rank(means: torch.Tensor, covariances: torch.Tensor,
               log_weights: torch.Tensor) -> PatchGMM:
    return PatchGMM.from_covariances(means, covariances, log_weights,
                                     means.shape[1]).to(means.device)


def _em_step(x: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor,
             log_weights: torch.Tensor, floor: float, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, int]:
    """One EM pass over ``x`` ``(n, d)``: new ``(means, covariances, log_weights)``, the
    mean log-likelihood per patch before the update (nats) and the components re-seeded."""
    gmm = _full_rank(means, covariances, log_weights)
    log_resp, total = [], 0.0
    for a in range(0, x.shape[0], _CHUNK):
        joint, _ = patch_log_joint(gmm, x[a:a + _CHUNK].float(), 0.0)
        log_p = torch.logsumexp(joint, 1, keepdim=True)
        total += float(log_p.double().sum())
        log_resp.append((joint - log_p).double())
    resp = torch.cat(log_resp).exp()  # (n, K)
    counts = resp.sum(0)
    d = x.shape[1]
    new_means = (resp.T @ x) / counts[:, None].clamp(min=1e-12)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    new_cov = torch.empty_like(covariances)
    for k in range(means.shape[0]):
        centred = x - new_means[k]
        new_cov[k] = (centred * resp[:, k, None]).T @ centred / counts[k].clamp(min=1e-12)
    new_cov += floor * eye
    starved = torch.nonzero(counts < d).flatten()
    if len(starved):
        picks = torch.randint(0, x.shape[0], (len(starved),), generator=generator)
        new_means[starved] = x[picks]
        new_cov[starved] = torch.cov(x.T) + floor * eye
        counts[starved] = d
    log_weights = (counts / counts.sum()).log()
    return new_means, new_cov, log_weights, total / x.shape[0], len(starved)


def validate_gmm(prior: GMMPatchPrior, clean: torch.Tensor, sigma_unit: torch.Tensor
                 ) -> dict[str, float]:
    """Denoise the clean crops ``(n, 1, h, w)`` (normalized intensity, float64) with noise
    ``sigma_unit`` ``(n,)``: PSNR (dB, peak 1) of the noisy and denoised crops, the mean
    log-likelihood of the clean crops' patches (nats) and the largest eigenvalue of the
    denoiser's Jacobian at the noisy crops (:func:`largest_jacobian_eigenvalue`)."""
    gen = torch.Generator().manual_seed(12345)
    noisy = clean + sigma_unit.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=gen,
                                                                  dtype=clean.dtype)
    denoised, _ = prior.denoise_unit(noisy, sigma_unit)
    _, clean_nll = prior.denoise_unit(clean, torch.zeros_like(sigma_unit))

    def psnr(x: torch.Tensor) -> float:
        return float(-10 * torch.log10(((x - clean) ** 2).mean()))

    jacobian = largest_jacobian_eigenvalue(prior, noisy, sigma_unit)
    return {"val_noisy_psnr_db": round(psnr(noisy), 3),
            "val_psnr_db": round(psnr(denoised), 3),
            "val_loglik_nats": round(float(-clean_nll.mean()), 3),
            "val_max_jacobian_eigenvalue": round(float(jacobian.max()), 4)}


def largest_jacobian_eigenvalue(prior: GMMPatchPrior, u: torch.Tensor,
                                sigma_unit: torch.Tensor, n_iter: int = 40) -> torch.Tensor:
    """Power-iteration estimate of the largest eigenvalue ``L`` of the Jacobian of
    ``D_sigma`` at each image of ``u`` ``(B, 1, H, W)`` (normalized intensity): ``(B,)``.

    The Jacobian is symmetric positive definite (the average of the patch posterior
    covariances over ``sigma^2``), so ``||Hess g_sigma|| = max |1 - eig|`` is below 1
    exactly when ``L < 2``: then ``D_sigma`` is the prox of a weakly convex function
    (Hurault et al., 2022). Power iteration approaches ``L`` from below.
    """
    def denoise(images: torch.Tensor) -> torch.Tensor:
        return prior.denoise_unit(images, sigma_unit)[0]

    v = torch.randn(u.shape, generator=torch.Generator().manual_seed(7), dtype=u.dtype)
    for _ in range(n_iter):
        v = v / v.flatten(1).norm(dim=1).clamp(min=1e-30).reshape(-1, 1, 1, 1)
        _, v = torch.func.jvp(denoise, (u,), (v,))
    return v.flatten(1).norm(dim=1)


def _checkpoint_paths(out: Path) -> tuple[Path, Path]:
    return out.with_suffix(".ckpt.safetensors"), out.with_suffix(".ckpt.json")


def fit_patch_gmm(config: GMMTrainConfig, out_path: str | Path, *,
                  progress: Callable[[dict], None] | None = None,
                  device: str | torch.device = "cpu") -> Path:
    """Fit the mixture, write ``out_path`` (safetensors) with its model card; returns it.

    Resumes from the checkpoint beside ``out_path`` when there is one for the same
    config. ``progress`` gets one event per iteration.
    """
    out = Path(out_path)
    device = torch.device(device)
    report = progress or (lambda _event: None)
    ckpt_tensors, ckpt_state = _checkpoint_paths(out)
    generator = torch.Generator().manual_seed(config.seed)
    x = _training_patches(config).to(device)
    floor = (config.variance_floor_hu / HU_PER_UNIT) ** 2
    state = {"iteration": 0, "elapsed_s": 0.0, "history": [], "converged": False,
             "config": config.to_dict()}
    if ckpt_state.is_file() and ckpt_tensors.is_file():
        saved = json.loads(ckpt_state.read_text())
        if saved["config"] != state["config"]:
            raise ValueError(f"checkpoint {ckpt_state} is of another config; remove it or "
                             "use another output path")
        state = saved
        tensors = {k: v.to(device) for k, v in load_file(str(ckpt_tensors)).items()}
        means, cov, log_weights = tensors["means"], tensors["covariances"], tensors["log_weights"]
        generator.set_state(tensors["rng"])
        report({"event": "resumed", "iteration": state["iteration"]})
    else:
        start = torch.randperm(x.shape[0], generator=generator)[: config.components]
        means = x[start.to(device)].clone()
        cov = (torch.cov(x.T) + floor * torch.eye(x.shape[1], dtype=x.dtype, device=device)
               ).expand(config.components, -1, -1).clone()
        log_weights = torch.full((config.components,), -math.log(config.components),
                                 dtype=x.dtype, device=device)
    while state["iteration"] < config.iterations and not state["converged"]:
        t0 = time.perf_counter()
        means, cov, log_weights, loglik, reseeded = _em_step(x, means, cov, log_weights, floor,
                                                             generator)
        state["iteration"] += 1
        state["elapsed_s"] += time.perf_counter() - t0
        gain = loglik - state["history"][-1]["loglik_nats"] if state["history"] else math.inf
        state["history"].append({"iteration": state["iteration"], "loglik_nats": round(loglik, 4),
                                 "reseeded": reseeded})
        state["converged"] = gain < config.tol_nats and reseeded == 0
        _save_checkpoint(ckpt_tensors, ckpt_state, state, means, cov, log_weights, generator)
        report({"event": "em", "iteration": state["iteration"], "loglik_nats": loglik,
                "reseeded": reseeded, "elapsed_s": state["elapsed_s"]})
    gmm = PatchGMM.from_covariances(means.cpu(), cov.cpu(), log_weights.cpu(), config.rank)
    final = _validate_on_split(gmm, config)
    report({"event": "validated", **final})
    save_weights(out, gmm.to("cpu").tensors(), _model_card(config, state, final, device))
    return out


def _validate_on_split(gmm: PatchGMM, config: GMMTrainConfig) -> dict[str, float]:
    """:func:`validate_gmm` on the validation crops of ``config`` (its validation phantoms
    and patients, noise spread over ``val_sigma_hu``), in float64."""
    val_clean = _sampler(config, "validation", config.val_crop_px, config.seed + 1).sample(
        config.n_val_crops).double()
    val_sigma = torch.linspace(*config.val_sigma_hu, len(val_clean),
                               dtype=torch.float64) / HU_PER_UNIT
    prior = GMMPatchPrior(gmm.to("cpu", torch.float64), config.stride,
                          config.sigma_ref_hu / HU_PER_UNIT)
    return validate_gmm(prior, val_clean, val_sigma)


def _validation_record(config: GMMTrainConfig, final: dict[str, float]) -> dict:
    """What a card records of :func:`_validate_on_split`: the crops and their results."""
    return {
        "seeds": list(config.val_seeds),
        "patients": corpus_record(config.val_patients),
        "crops": config.n_val_crops,
        "crop_px": config.val_crop_px,
        "sigma_hu": list(config.val_sigma_hu),
        "metric": "PSNR (dB, peak 1 on normalized intensity) of D_sigma on the "
                  "noisy crops, noise evenly spread over sigma_hu; mean log-likelihood "
                  "of the clean crops' patches; largest eigenvalue of the Jacobian of "
                  "D_sigma at the noisy crops (power iteration; ||Hess g|| < 1 iff < 2)",
        **final,
    }


def _layout(card: dict) -> tuple:
    """What parts of one mixture must share: patch size, rank, stride, sigma_ref."""
    arch = card["architecture"]
    return arch["patch_size"], arch["rank"], arch["stride"], card["sigma_ref_unit"]


def join_mixtures(parts: Sequence[tuple[str | Path, float]], out_path: str | Path,
                  validation: GMMTrainConfig) -> Path:
    """Write the mixture ``p = sum_j share_j p_j`` of fitted mixtures to ``out_path``.

    ``parts``: ``(weights file, share)`` pairs, shares positive and summing to 1; every
    part must have the same patch size, rank, stride and reference noise level. Each
    part's components keep their means and covariances; their log weights are shifted
    by ``log share_j``. The card records every part's data, training and validation,
    and the union's own validation on the crops of ``validation`` (its validation
    phantoms and patients). Raises ``ValueError`` naming the part that does not fit.
    """
    if not parts:
        raise ValueError("join_mixtures needs at least one part")
    shares = [float(share) for _, share in parts]
    if min(shares) <= 0 or abs(sum(shares) - 1) > 1e-9:
        raise ValueError(f"shares must be positive and sum to 1, got {shares}")
    loaded = [(Path(path), *load_weights(path)) for path, _ in parts]
    first_path, _, first = loaded[0]
    for path, _, card in loaded:
        if card.get("model") != "gmm":
            raise ValueError(f"{path} is a {card.get('model')!r} model, not a gmm")
        if _layout(card) != _layout(first):
            raise ValueError(f"{path} has patch size, rank, stride, sigma_ref {_layout(card)}; "
                             f"{first_path} has {_layout(first)}")
    tensors = {name: torch.cat([t[name] for _, t, _ in loaded]) for name in PatchGMM.TENSORS
               if name != "log_weights"}
    tensors["log_weights"] = torch.cat([t["log_weights"] + math.log(share)
                                        for (_, t, _), share in zip(loaded, shares, strict=True)])
    gmm = PatchGMM(**tensors)
    final = _validate_on_split(gmm, validation)
    save_weights(out_path, gmm.tensors(), _union_card(loaded, shares, final, validation))
    return Path(out_path)


def _union_card(loaded: list[tuple[Path, dict, dict]], shares: list[float], final: dict,
                validation: GMMTrainConfig) -> dict:
    """The joined mixture's card: the union of the parts' data, each part's record."""
    cards = [card for _, _, card in loaded]
    patients: dict[str, dict] = {}
    for card in cards:
        patients.update({p["patient"]: p for p in card["data"]["real_patients"]})
    parts = [{"file": path.name, "sha256": card["sha256"], "share": share,
              "components": card["architecture"]["components"], "data": card["data"],
              "training": card["training"], "validation": card["validation"]}
             for (path, _, card), share in zip(loaded, shares, strict=True)]
    return {
        "model": "gmm",
        "architecture": {**cards[0]["architecture"],
                         "components": sum(c["architecture"]["components"] for c in cards)},
        "sigma_ref_unit": cards[0]["sigma_ref_unit"],
        "normalization": NORMALIZATION_RECORD,
        "data": {"phantoms": cards[0]["data"]["phantoms"],
                 "train_seeds": sorted({s for c in cards for s in c["data"]["train_seeds"]}),
                 "real_patients": list(patients.values()),
                 "parts": [{k: part[k] for k in ("share", "components", "data")}
                           for part in parts]},
        "training": {
            "method": "union of separately fitted mixtures: every part's components as "
                      "fitted, its log weights shifted by log(share)",
            "wall_time_s": round(sum(c["training"]["wall_time_s"] for c in cards), 1),
            "parts": [{k: part[k] for k in ("file", "sha256", "share", "training",
                                            "validation")} for part in parts],
        },
        "validation": _validation_record(validation, final),
        "ctpnp_version": package_versions()["ctpnp"],
    }


def _save_checkpoint(tensors_path: Path, state_path: Path, state: dict, means: torch.Tensor,
                     cov: torch.Tensor, log_weights: torch.Tensor,
                     generator: torch.Generator) -> None:
    with staged_file(tensors_path) as partial:
        save_file({"means": means.cpu(), "covariances": cov.cpu(),
                   "log_weights": log_weights.cpu(), "rng": generator.get_state()}, str(partial))
    with staged_file(state_path) as partial:
        partial.write_text(json.dumps(state) + "\n")


def _model_card(config: GMMTrainConfig, state: dict, final: dict, device: torch.device) -> dict:
    return {
        "model": "gmm",
        "architecture": {"components": config.components, "patch_size": config.patch_size,
                         "rank": config.rank, "stride": config.stride},
        "sigma_ref_unit": config.sigma_ref_hu / HU_PER_UNIT,
        "normalization": NORMALIZATION_RECORD,
        "data": training_data_record(config, patches=config.n_patches),
        "training": {
            "method": "expectation-maximization, full covariances, then rank "
                      f"{config.rank} + isotropic",
            "iterations": state["iteration"],
            "stopped": "log-likelihood gain below tol_nats" if state["converged"]
                       else "iteration cap",
            "wall_time_s": round(state["elapsed_s"], 1),
            "device": describe_device(device),
            "config": config.to_dict(),
            "history": state["history"],
        },
        "validation": _validation_record(config, final),
        "ctpnp_version": package_versions()["ctpnp"],
    }
