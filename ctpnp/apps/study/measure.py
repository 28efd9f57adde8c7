"""What the study measures on one reconstruction against its reference."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats

from ctpnp import physics
from ctpnp.apps.study.scenes import Scene, object_mask
from ctpnp.quality import (
    Calibration,
    SliceVerdict,
    expand_regions,
    quality_maps,
    region_rmse_hu,
    region_scores,
    slice_verdicts,
)
from ctpnp.quality.detection import detection_scores

if TYPE_CHECKING:  # the projector (ODL, ASTRA) is not loaded for the annotation alone
    from ctpnp.projector import Tomography

__all__ = ["error_correlation", "implausibility", "roi_measurements"]


def roi_measurements(hu: np.ndarray, scene: Scene) -> dict:
    """Mean HU in every insert ROI and the noise std in the uniform ROI of ``scene``.

    Args:
        hu: ``(H, W)`` reconstruction (HU).

    Returns:
        ``{"inserts": {name: {"nominal_hu", "measured_hu"}}, "noise_std_hu": float}``,
        or ``{}`` when the scene has no ROIs.
    """
    if scene.noise_roi is None:
        return {}
    return {
        "inserts": {insert.name: {"nominal_hu": insert.nominal_hu,
                                  "measured_hu": float(hu[insert.mask].mean())}
                    for insert in scene.inserts if insert.mask.any()},
        "noise_std_hu": float(hu[scene.noise_roi].std()),
    }


def error_correlation(log_prior_map: np.ndarray, hu: np.ndarray, reference_hu: np.ndarray
                      ) -> dict[str, float]:
    """How well a log-prior map locates errors, inside the object.

    Args:
        log_prior_map: ``(H, W)`` nats per pixel (larger = less plausible).
        hu, reference_hu: ``(H, W)`` reconstruction and reference (HU).

    Returns:
        ``mean_log_prior`` (nats/pixel, over the object), and the ``pearson`` and
        ``spearman`` correlations between the map and ``|hu - reference_hu|``
        over the object's pixels (:func:`~ctpnp.apps.study.scenes.object_mask`).
    """
    inside = object_mask(reference_hu)
    values, errors = log_prior_map[inside], np.abs(hu - reference_hu)[inside]
    if not (np.isfinite(values).all() and np.isfinite(errors).all()) or values.std() == 0 \
            or errors.std() == 0:
        return {"mean_log_prior": float(values.mean()), "pearson": math.nan,
                "spearman": math.nan}
    return {"mean_log_prior": float(values.mean()),
            "pearson": float(stats.pearsonr(values, errors).statistic),
            "spearman": float(stats.spearmanr(values, errors).statistic)}


def implausibility(x: torch.Tensor, y: torch.Tensor, op: Tomography, prior, judge,
                   calibration: Calibration, reference_hu: torch.Tensor
                   ) -> tuple[np.ndarray, dict]:
    """The calibrated implausibility of one reconstruction and how well it finds its errors.

    Args:
        x: ``(1, 1, H, W)`` reconstruction (μ, 1/mm); y: ``(1, 1, views, channels)`` the
            post-log data it was made from; op: their forward model.
        prior, judge, calibration: the prior, the prior whose denoiser makes the maps
            (:func:`ctpnp.quality.load_judge`) and the quality calibration
            (:func:`ctpnp.quality.load_calibration`).
        reference_hu: ``(1, 1, H, W)`` the reference (HU).

    Returns:
        The ``(H, W)`` float32 implausibility (z of each region on its pixels, NaN
        outside the body) and the record fields: the slice's verdict
        (``implausibility_score_z``, ``implausibility_flagged``,
        ``implausibility_threshold_z``) and the detection of the image's own errors
        (:func:`ctpnp.quality.detection.detection_scores` of the region z against the
        region RMSE in HU: ``implausibility_regions`` scored, ``failed_regions`` of them,
        ``implausibility_auroc``, ``implausibility_spearman``). A non-finite ``x`` gets
        a NaN map, NaN scores, no flag and no regions.
    """
    if not bool(torch.isfinite(x).all()):
        z_map = np.full(x.shape[-2:], math.nan, dtype=np.float32)
        verdict = SliceVerdict(math.nan, False, math.nan, ())
        detection = detection_scores(np.empty(0), np.empty(0))
    else:
        scores = region_scores(quality_maps(x, y, op, prior, judge), x, calibration)
        (verdict,) = slice_verdicts(scores, calibration)
        rmse_hu = region_rmse_hu(physics.mu_to_hu(x), reference_hu, calibration.region_px)
        detection = detection_scores(scores.implausibility[0, 0].numpy(),
                                     rmse_hu[0, 0].cpu().numpy())
        z_map = expand_regions(scores.implausibility, tuple(x.shape[-2:]),
                               calibration.region_px)[0, 0].float().numpy()
    return z_map, {
        "implausibility_score_z": verdict.score, "implausibility_flagged": verdict.flagged,
        "implausibility_threshold_z": verdict.threshold_z,
        "implausibility_regions": detection["regions"],
        "failed_regions": detection["failed_regions"],
        "implausibility_auroc": detection["auroc"],
        "implausibility_spearman": detection["spearman"],
    }
