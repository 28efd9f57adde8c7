"""Does a reconstruction look upright? The body outline against the patient position.

For raw data whose angle and channel conventions cannot be told from the files
(:mod:`ctpnp.io.projections`), a wrong convention gives a sharp but transposed
or upside-down image. A patient lying on the table has a flat side, the one on
the table: posterior when supine (``HFS``, ``FFS``), anterior when prone
(``HFP``, ``FFP``). In the image frame (rows run to posterior) that side must be
at the bottom of a supine patient's slice and at the top of a prone one's.

The check measures, for each side of the body's bounding box, how wide the
body still is a tenth of the way in (relative to that side's length): the flat
side is the widest there. A mirror image left to right keeps the outline, so
left-right mirroring cannot be told this way; the verdict says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["BODY_HU", "OrientationCheck", "check_orientation"]

BODY_HU = -500.0
"""Threshold (HU) between air and the body."""

_DEPTH = 0.1
"""How far in (fraction of the extent) the width of each side is measured."""
_MARGIN = 0.05
"""How much flatter (fraction of the side's length) the flat side must be than the others."""
_MIN_PIXELS = 400
"""Fewest body pixels to judge an outline."""
_SUPINE, _PRONE = ("HFS", "FFS"), ("HFP", "FFP")


@dataclass(frozen=True)
class OrientationCheck:
    """The verdict: ``"upright"``, ``"upside down"``, ``"transposed"`` or ``"cannot tell"``,
    the slice judged (0-based), each side's flatness and a one-line message."""

    verdict: str
    slice_index: int
    flatness: dict[str, float]
    message: str


def _flatness(body: np.ndarray) -> dict[str, float]:
    """Per side (top, bottom, left, right of the image), the body's width a tenth of the way
    in divided by the side's length: 1 for a flat side, small for a rounded one."""
    rows, columns = np.nonzero(body)
    top, bottom, left, right = rows.min(), rows.max(), columns.min(), columns.max()
    height, width = bottom - top + 1, right - left + 1
    depth_rows, depth_columns = int(_DEPTH * height), int(_DEPTH * width)
    return {
        "top": body[top + depth_rows].sum() / width,
        "bottom": body[bottom - depth_rows].sum() / width,
        "left": body[:, left + depth_columns].sum() / height,
        "right": body[:, right - depth_columns].sum() / height,
    }


def check_orientation(hu: np.ndarray, patient_position: str = "") -> OrientationCheck:
    """Judge the orientation of the slice with the most body in ``hu``.

    Args:
        hu: ``(S, H, W)`` or ``(H, W)`` HU in the image frame (rows to posterior,
            columns to the patient's left); NaN slices are skipped.
        patient_position: DICOM PatientPosition (``HFS``, ``FFS``, ``HFP``, ``FFP``;
            empty counts as supine; decubitus positions cannot be judged).
    """
    volume = np.nan_to_num(np.asarray(hu, dtype=np.float64), nan=-1000.0)
    volume = volume[None] if volume.ndim == 2 else volume
    masks = volume > BODY_HU
    k = int(np.argmax(masks.sum(axis=(1, 2))))
    position = patient_position.strip().upper() or "HFS"
    labels, count = ndimage.label(masks[k])
    if count == 0 or position not in _SUPINE + _PRONE:
        reason = "no body in the image" if count == 0 else f"patient position {position}"
        return OrientationCheck("cannot tell", k, {}, f"orientation cannot be checked: {reason}")
    sizes = ndimage.sum_labels(masks[k], labels, range(1, count + 1))
    body = labels == 1 + int(np.argmax(sizes))  # the largest object: the body, not the table
    if body.sum() < _MIN_PIXELS or body[[0, -1]].any() or body[:, [0, -1]].any():
        return OrientationCheck("cannot tell", k, {}, "orientation cannot be checked: the body "
                                "is too small or cut by the image edge")
    flatness = {side: float(value) for side, value in _flatness(body).items()}
    ranked = sorted(flatness, key=flatness.get, reverse=True)
    expected = "bottom" if position in _SUPINE else "top"
    lying = "supine" if position in _SUPINE else "prone"
    if flatness[ranked[0]] - flatness[ranked[1]] < _MARGIN:
        verdict = "cannot tell"
        message = "orientation cannot be checked: no side of the body outline is clearly flat"
    elif ranked[0] == expected:
        verdict = "upright"
        message = (f"the body's flat side is at the {expected}, as for a {lying} patient "
                   f"({position}); left-right mirroring cannot be told from the outline")
    else:
        verdict = "upside down" if ranked[0] in ("top", "bottom") else "transposed"
        message = (f"the reconstruction looks {verdict}: the body's flat side (on the table) "
                   f"is at the {ranked[0]}, a {lying} patient ({position}) has it at the "
                   f"{expected}; the raw data may follow other angle or channel conventions "
                   "(docs/dicom-ct-pd-conventions.md)")
    return OrientationCheck(verdict, k, flatness, message)
