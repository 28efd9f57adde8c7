"""Detection scores of a region indicator: AUROC by ranks equals the pairwise definition."""

import math

import numpy as np
import pytest

from ctpnp.quality.detection import auroc, detection_scores


def _pairwise_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    positive, negative = scores[labels], scores[~labels]
    wins = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return (wins + 0.5 * ties) / (positive.size * negative.size)


def test_auroc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3 + 0.1 * scores
    assert auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels))
    assert auroc(scores, labels) > 0.6  # labels were drawn to follow the scores
    assert math.isnan(auroc(scores, np.zeros(200, dtype=bool)))


def test_detection_scores_use_the_finite_regions_and_the_failure_threshold():
    rmse = np.array([[10.0, 20.0, np.nan], [60.0, 80.0, 30.0]])  # failed: above 50 HU
    z = np.array([[0.0, 1.0, 9.0], [3.0, np.nan, 2.0]])
    result = detection_scores(z, rmse)
    assert result["regions"] == 4 and result["failed_regions"] == 1
    assert result["auroc"] == 1.0  # the one failed region (60 HU) has the highest z
    assert result["spearman"] == pytest.approx(1.0)
    assert detection_scores(-z, rmse)["auroc"] == 0.0
