"""The orientation check: a supine body's flat back must be at the bottom of the slice."""

import numpy as np
import pytest

from ctpnp.apps.orientation import check_orientation


def _supine_slice() -> np.ndarray:
    """(128, 128) HU: a body wider than deep with a flat back (rows run to posterior), on a
    table below it, air around."""
    rows, columns = np.mgrid[0:128, 0:128]
    body = (((columns - 64) / 50) ** 2 + ((rows - 70) / 36) ** 2 < 1) & (rows < 92)
    hu = np.where(body, 40.0, -1000.0)
    hu[100:103, 10:118] = 300.0  # the table, apart from the body
    return hu


@pytest.mark.parametrize(("transform", "verdict"), [
    (lambda hu: hu, "upright"),
    (lambda hu: hu[:, ::-1], "upright"),  # left-right mirroring keeps the outline
    (lambda hu: hu[::-1], "upside down"),
    (lambda hu: hu.T, "transposed"),
    (lambda hu: np.rot90(hu), "transposed"),
])
def test_verdict_for_a_supine_patient(transform, verdict):
    result = check_orientation(np.stack([np.full((128, 128), np.nan), transform(_supine_slice())]),
                               "HFS")
    assert result.verdict == verdict and result.slice_index == 1
    assert ("looks" in result.message) == (verdict != "upright")


def test_prone_patient_has_the_flat_side_on_top_and_unknown_positions_are_not_judged():
    assert check_orientation(_supine_slice()[::-1], "FFP").verdict == "upright"
    assert check_orientation(_supine_slice(), "HFP").verdict == "upside down"
    assert check_orientation(_supine_slice(), "HFDR").verdict == "cannot tell"
    assert check_orientation(np.full((64, 64), -1000.0), "HFS").verdict == "cannot tell"
    rows, columns = np.mgrid[0:128, 0:128]
    round_body = np.where((rows - 64) ** 2 + (columns - 64) ** 2 < 40 ** 2, 40.0, -1000.0)
    assert check_orientation(round_body, "HFS").verdict == "cannot tell"  # no flat side
