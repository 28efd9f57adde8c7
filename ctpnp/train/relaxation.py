"""Relax a trained Prox-denoiser until it is an exact prox on its validation patches.

A gradient-step denoiser ``D = Id - grad g`` is the prox of a weakly convex
potential when ``||Hess g|| < 1``. L2 training alone denoises best but leaves
that norm above 1; the Hessian penalty brings it down at a measured cost in
PSNR. Relaxation is the other route: ``D_gamma = Id - gamma grad g`` is the
gradient-step denoiser of ``gamma g``, whose Hessian norm is ``gamma`` times
the old one. :func:`relax_prox_weights` measures the largest norm on the
validation patches of the network's own training run and writes a copy of the
weights whose card sets ``gamma`` so that this largest norm becomes
``target_norm``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ctpnp.priors.prox_denoiser import ProxDenoiserPrior
from ctpnp.priors.weights import load_weights, save_weights
from ctpnp.train.prox_denoiser import ProxTrainConfig, validate, validation_patches

__all__ = ["relax_prox_weights"]

_STORED = ("format", "sha256")


def relax_prox_weights(
    weights_path: str | Path,
    out_path: str | Path,
    target_norm: float = 0.9,
    power_iters: int = 50,
) -> dict[str, float]:
    """Write ``out_path``: the weights of ``weights_path`` with ``gamma`` in the card.

    ``gamma = min(1, target_norm / L)`` with ``L`` the largest power-iteration
    estimate of ``||Hess g_sigma||`` over the validation patches of the
    training run recorded in the card (``power_iters`` iterations; the
    estimate approaches the norm from below, so ``target_norm`` keeps a
    margin under 1). Relaxing an already relaxed network multiplies the
    factors. ``weights_path`` is not modified.

    Returns:
        ``{"relaxation", "hessian_norm_before", "val_max_hessian_norm",
        "val_psnr_db_before", "val_psnr_db", "val_noisy_psnr_db"}`` (PSNR in
        dB on normalized intensity, as in training).
    """
    if not 0.0 < target_norm < 1.0:
        raise ValueError(f"target_norm must lie in (0, 1), got {target_norm}")
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

    before = validate(network, config, val)
    network.relaxation = min(1.0, network.relaxation * target_norm
                             / before["val_max_hessian_norm"])
    after = validate(network, config, val)
    record = {
        "relaxation": network.relaxation,
        "hessian_norm_before": before["val_max_hessian_norm"],
        "val_psnr_db_before": before["val_psnr_db"],
        **after,
    }
    kept = {k: v for k, v in card.items() if k not in _STORED}
    relaxed_card = {
        **kept,
        "relaxation": network.relaxation,
        "validation": {**card.get("validation", {}), **after,
                       "relaxed": {"target_norm": target_norm, "power_iters": power_iters,
                                   **record}},
    }
    save_weights(out_path, tensors, relaxed_card)
    return record
