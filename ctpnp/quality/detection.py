"""How well a region score detects failed regions: AUROC and rank correlation.

A region *failed* when its RMSE against the reference exceeds
:data:`FAILED_RMSE_HU` (the quality issue's definition). Used by
``benchmarks/bench_quality.py`` and by ``ctpnp compare`` whenever a
reconstruction folder holds an implausibility map.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["FAILED_RMSE_HU", "auroc", "detection_scores"]

FAILED_RMSE_HU = 50.0
"""A region whose RMSE against the reference exceeds this (HU) counts as failed."""


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (same shape; ties count
    half); NaN without both classes."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def detection_scores(scores: np.ndarray, region_rmse_hu: np.ndarray) -> dict[str, float]:
    """Over the regions where both are finite: ``regions``, ``failed_regions`` (RMSE above
    :data:`FAILED_RMSE_HU`), ``auroc`` for failed ones and Spearman ``spearman`` between
    score and RMSE (NaN when undefined). Arrays of any equal shape."""
    scores, rmse = np.ravel(scores), np.ravel(region_rmse_hu)
    keep = np.isfinite(scores) & np.isfinite(rmse)
    scores, rmse = scores[keep], rmse[keep]
    failed = rmse > FAILED_RMSE_HU
    rho = (float(stats.spearmanr(scores, rmse).statistic)
           if scores.size > 2 and np.ptp(scores) > 0 and np.ptp(rmse) > 0 else math.nan)
    return {"regions": int(scores.size), "failed_regions": int(failed.sum()),
            "auroc": auroc(scores, failed), "spearman": rho}
