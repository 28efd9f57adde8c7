"""Relax a trained Prox-denoiser, per noise level, until it is an exact prox on validation patches.

A gradient-step denoiser ``D = Id - grad g`` is the prox of a weakly convex
potential when ``||Hess g|| < 1``. L2 training alone denoises best but leaves
that norm above 1; the Hessian penalty brings it down at a measured cost in
PSNR. Relaxation is the other route: ``D_gamma = Id - gamma grad g`` is the
gradient-step denoiser of ``gamma g``, whose Hessian norm is ``gamma`` times
the old one. The norm grows with the noise level, and a PnP run uses one
level, so :func:`relax_prox_weights` measures the largest norm on the
validation patches of the network's own training run at each of a few noise
levels (knots) and writes a copy of the weights whose card sets ``gamma`` at
each knot so that this largest norm becomes ``target_norm`` there
(:class:`ctpnp.priors.relaxation.Relaxation`, interpolated in ``log sigma``
between knots; the validation check over evenly spread levels then measures
the norm between the knots too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ctpnp.priors.normalization import HU_PER_UNIT
from ctpnp.priors.prox_denoiser import (
    GradientStepDenoiser,
    ProxDenoiserPrior,
    hessian_spectral_norm,
)
from ctpnp.priors.weights import load_weights, save_weights
from ctpnp.train.prox_denoiser import ProxTrainConfig, validate, validation_patches

__all__ = ["relax_prox_weights"]

_STORED = ("format", "sha256")


def relax_prox_weights(
    weights_path: str | Path,
    out_path: str | Path,
    target_norm: float = 0.9,
    power_iters: int = 50,
    knots: int = 8,
) -> dict:
    """Write ``out_path``: the weights of ``weights_path`` with ``gamma(sigma)`` in the card.

    At ``knots`` noise levels spaced geometrically over the trained range,
    ``gamma_k = min(1, gamma_old(sigma_k) target_norm / L_k)`` with ``L_k`` the
    largest power-iteration estimate of ``||Hess g_sigma_k||`` over the
    validation patches of the training run recorded in the card, noised at
    ``sigma_k`` (``power_iters`` iterations; the estimate approaches the norm
    from below, so ``target_norm`` keeps a margin under 1). Relaxing an already
    relaxed network multiplies the factors. ``weights_path`` is not modified.

    Returns:
        ``{"relaxation"`` (the card's table), ``"knots"`` (per knot: ``sigma_hu``,
        ``hessian_norm_before``, ``gamma``, ``hessian_norm``), ``"hessian_norm_before",
        "val_max_hessian_norm", "val_psnr_db_before", "val_psnr_db",
        "val_noisy_psnr_db"}`` (PSNR in dB on normalized intensity, as in training;
        the ``val_`` entries on the training run's validation patches, whose
        noise levels are spread evenly over the range).
    """
    if not 0.0 < target_norm < 1.0:
        raise ValueError(f"target_norm must lie in (0, 1), got {target_norm}")
    if knots < 1:
        raise ValueError(f"knots must be at least 1, got {knots}")
    tensors, card = load_weights(weights_path)
    network = ProxDenoiserPrior.from_weights(tensors, card, str(weights_path)).network
    try:
        config = ProxTrainConfig.from_dict(card["training"]["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"model card of {weights_path} lacks the training record relaxation needs: {err!r}"
        ) from None
    config = replace(config, val_power_iters=power_iters)
    val = validation_patches(config, config.n_val_patches)
    lo, hi = config.sigma_range_unit
    sigma_unit = tuple(lo * (hi / lo) ** (k / max(knots - 1, 1)) for k in range(knots))

    before = validate(network, config, val)
    norms_before = [_max_hessian_norm(network, val[0], s, power_iters, k)
                    for k, s in enumerate(sigma_unit)]
    network.relaxation = network.relaxation.scaled_at(
        sigma_unit, tuple(target_norm / n for n in norms_before))
    norms_after = [_max_hessian_norm(network, val[0], s, power_iters, k)
                   for k, s in enumerate(sigma_unit)]
    after = validate(network, config, val)
    relaxation = network.relaxation.to_card()
    record = {
        "relaxation": relaxation,
        "knots": [{"sigma_hu": s * HU_PER_UNIT, "hessian_norm_before": b, "gamma": g,
                   "hessian_norm": a}
                  for s, b, g, a in zip(sigma_unit, norms_before, network.relaxation.gamma,
                                        norms_after, strict=True)],
        "hessian_norm_before": before["val_max_hessian_norm"],
        "val_psnr_db_before": before["val_psnr_db"],
        "val_psnr_db_by_sigma_hu_before": before["val_psnr_db_by_sigma_hu"],
        **after,
    }
    kept = {k: v for k, v in card.items() if k not in _STORED}
    relaxed_card = {
        **kept,
        "relaxation": relaxation,
        "validation": {**card.get("validation", {}), **after,
                       "relaxed": {"target_norm": target_norm, "power_iters": power_iters,
                                   **record}},
    }
    save_weights(out_path, tensors, relaxed_card)
    return record


def _max_hessian_norm(network: GradientStepDenoiser, clean: torch.Tensor, sigma_unit: float,
                      power_iters: int, seed: int) -> float:
    """Largest estimated ``||Hess g_sigma||`` over ``clean`` patches ``(n, 1, p, p)`` noised
    at ``sigma_unit`` (noise from ``seed``, the power iteration's start from a fixed seed)."""
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    sigma = torch.full((clean.shape[0],), sigma_unit)
    norm = hessian_spectral_norm(network, clean + sigma_unit * noise, sigma, power_iters,
                                 generator=torch.Generator().manual_seed(7))
    return float(norm.max())
