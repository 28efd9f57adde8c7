"""The voxel-to-world affine of a slice stack, and back to DICOM plane geometry.

Volumes are indexed ``(k, i, j)`` = (slice, row, column). The affine maps a
voxel index to RAS millimetres as NIfTI does (+x towards the patient's Right,
+y Anterior, +z Superior). DICOM's patient frame is LPS (+x Left, +y Posterior),
so the first two world axes change sign. The affine's columns are:

* column 0: the step from slice ``k`` to ``k + 1`` (the slice normal times the
  spacing, or a sheared step for gantry-tilted stacks),
* column 1: ``col_cosine * row spacing`` (down a column, increasing ``i``),
* column 2: ``row_cosine * column spacing`` (along a row, increasing ``j``),
* column 3: the centre of voxel ``(0, 0, 0)`` (ImagePositionPatient of slice 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "LPS_TO_RAS",
    "PlaneGeometry",
    "affine_from_planes",
    "axial_affine",
    "planes_from_affine",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class PlaneGeometry:
    """DICOM plane geometry of a stack, in LPS mm.

    Attributes:
        positions_mm: (S, 3) ImagePositionPatient of each slice.
        row_cosine: (3,) along a row (first half of ImageOrientationPatient).
        col_cosine: (3,) down a column (second half).
        pixel_spacing_mm: (between rows, between columns), as PixelSpacing.
        slice_spacing_mm: distance between slice planes along their normal.
    """

    positions_mm: np.ndarray
    row_cosine: np.ndarray
    col_cosine: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    slice_spacing_mm: float

    @property
    def normal(self) -> np.ndarray:
        """(3,) unit slice normal ``row_cosine x col_cosine`` (LPS)."""
        n = np.cross(self.row_cosine, self.col_cosine)
        return n / np.linalg.norm(n)


def affine_from_planes(
    origin_mm: ArrayLike,
    row_cosine: ArrayLike,
    col_cosine: ArrayLike,
    pixel_spacing_mm: tuple[float, float],
    step_mm: ArrayLike,
) -> np.ndarray:
    """(4, 4) RAS affine of a stack from its LPS plane geometry (see module docstring)."""
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(step_mm, dtype=float)
    lps[:3, 1] = np.asarray(col_cosine, dtype=float) * pixel_spacing_mm[0]
    lps[:3, 2] = np.asarray(row_cosine, dtype=float) * pixel_spacing_mm[1]
    lps[:3, 3] = np.asarray(origin_mm, dtype=float)
    return LPS_TO_RAS @ lps


def planes_from_affine(affine: ArrayLike, n_slices: int) -> PlaneGeometry:
    """DICOM plane geometry of ``n_slices`` slices from a (4, 4) RAS affine.

    Raises:
        ValueError: if the in-plane axes are degenerate or not orthogonal.
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    if lps.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {lps.shape}")
    step, down, along, origin = lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3]
    spacing = (float(np.linalg.norm(down)), float(np.linalg.norm(along)))
    if min(spacing) == 0 or not np.all(np.isfinite(lps)):
        raise ValueError(f"affine has a degenerate in-plane axis: {affine}")
    col_cosine, row_cosine = down / spacing[0], along / spacing[1]
    if abs(row_cosine @ col_cosine) > 1e-6:
        raise ValueError("affine in-plane axes (columns 1 and 2) are not orthogonal")
    normal = np.cross(row_cosine, col_cosine)
    slice_spacing = abs(float(step @ normal))
    if slice_spacing == 0:
        raise ValueError("affine slice step (column 0) lies in the image plane")
    positions = origin + np.arange(n_slices)[:, None] * step
    return PlaneGeometry(positions, row_cosine, col_cosine, spacing, slice_spacing)


def axial_affine(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(4, 4) RAS affine of a standard axial stack centred on the isocentre.

    Rows run anterior to posterior, columns patient right to left (the radiological
    display of DICOM axial images), slices inferior to superior; the centre of
    the ``(slices, H, W)`` grid ``shape`` is at the world origin.
    """
    centre = (np.asarray(shape, dtype=float) - 1) / 2 * np.asarray(spacing_mm, dtype=float)
    step = np.array([0.0, 0.0, spacing_mm[0]])
    origin = -np.array([centre[2], centre[1], centre[0]])
    return affine_from_planes(origin, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), spacing_mm[1:], step)
