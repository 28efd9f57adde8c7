"""``pipelines/calibrate/model_error.py``: the data's distance from the reconstruction model."""

from __future__ import annotations

import pytest
from conftest import load_pipeline

from ctpnp import ScanGeometry, Tomography, evaluation


@pytest.fixture(scope="module")
def model_error():
    return load_pipeline("calibrate/model_error.py")


def test_sharp_phantoms_sit_further_from_the_model_than_a_real_slice(model_error):
    op = Tomography(ScanGeometry.clinical_fan((64, 64), evaluation.PIXEL_MM, 90))
    photons = list(evaluation.DOSES.values())
    scans = [*evaluation.phantom_scans(op, [5001], photons),
             *evaluation.real_ct_scans(op, ["J2K_pixelrep_mismatch.dcm"], photons)]
    phantom, head = model_error.model_error_rows(scans, op)
    assert (phantom["scan"], head["scan"]) == ("5001", "J2K_pixelrep_mismatch.dcm")
    # exact line integrals of analytic edges vs a grid twice as fine of a sampled image
    assert phantom["model_error_variance"] > 2 * head["model_error_variance"] > 0
    for row in (phantom, head):
        for dose in evaluation.DOSES:
            assert row[f"ratio, {dose}"] == pytest.approx(
                row["model_error_variance"] / row[f"noise variance, {dose}"])
        low, high = (row[f"ratio, {dose}"] for dose in evaluation.DOSES)
        assert high > 2 * low  # less noise beside the same model error
