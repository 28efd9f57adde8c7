"""What the study measures on one reconstruction against its reference."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ctpnp.apps.study.scenes import Scene, object_mask

__all__ = ["error_correlation", "roi_measurements"]


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
