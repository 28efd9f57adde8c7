"""Group slice records into stacks, order them along the slice normal, check the spacing.

A stack is the slices of one SeriesInstanceUID that share orientation, matrix
size and pixel spacing. Slices are ordered by their position along the normal
``row_cosine x col_cosine`` (ImagePositionPatient . normal), never by
InstanceNumber. A stack becomes a volume only if its slices are evenly spaced
without duplicates and, unless allowed, not sheared by gantry tilt.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from ctpnp.io.affine import affine_from_planes
from ctpnp.io.errors import SliceGeometryError
from ctpnp.io.headers import SliceRecord

__all__ = ["group_stacks", "stack_affine"]

GAP_TOLERANCE_MM = 0.01
"""Absolute part of the position tolerance; the relative part is 1 % of the slice spacing."""

_POSITION = "ImagePositionPatient (0020,0032)"


def _key(record: SliceRecord) -> tuple:
    return (
        record.series_uid,
        tuple(np.round(record.row_cosine + record.col_cosine, 3)),
        record.rows,
        record.columns,
        tuple(np.round(record.pixel_spacing_mm, 4)),
    )


def _normal(record: SliceRecord) -> np.ndarray:
    n = np.cross(record.row_cosine, record.col_cosine)
    return n / np.linalg.norm(n)


def group_stacks(records: Iterable[SliceRecord]) -> list[list[SliceRecord]]:
    """Stacks of records, each sorted along its slice normal.

    Copies of one instance (same SOPInstanceUID and frame) count once. Stacks
    come in a stable order: by SeriesNumber, then SeriesInstanceUID, then first file.
    """
    groups: dict[tuple, list[SliceRecord]] = defaultdict(list)
    seen = set()
    for record in records:
        identity = (record.sop_uid, record.frame)
        if record.sop_uid and identity in seen:
            continue
        seen.add(identity)
        groups[_key(record)].append(record)
    stacks = []
    for group in groups.values():
        normal = _normal(group[0])
        stacks.append(sorted(group, key=lambda r: (float(np.dot(r.position_mm, normal)),
                                                   str(r.path), r.frame)))
    return sorted(stacks, key=lambda s: (s[0].series_number is None, s[0].series_number or 0,
                                         s[0].series_uid, str(min(r.path for r in s))))


def stack_affine(
    stack: list[SliceRecord], *, allow_tilt: bool = False
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(4, 4) RAS affine and ``(slice, row, column)`` spacing in mm of a sorted stack.

    A single slice gets the spacing SliceThickness (1 mm when absent).

    Raises:
        SliceGeometryError: duplicate positions, uneven spacing, or a sheared
            (gantry-tilted) stack when ``allow_tilt`` is false.
    """
    first = stack[0]
    normal = _normal(first)
    positions = np.array([r.position_mm for r in stack])
    if len(stack) == 1:
        step = normal * (first.thickness_mm or 1.0)
    else:
        step = _checked_step(stack, positions, normal, allow_tilt)
    affine = affine_from_planes(
        positions[0], first.row_cosine, first.col_cosine, first.pixel_spacing_mm, step
    )
    return affine, (float(step @ normal), *first.pixel_spacing_mm)


def _checked_step(
    stack: list[SliceRecord], positions: np.ndarray, normal: np.ndarray, allow_tilt: bool
) -> np.ndarray:
    """The mean slice-to-slice step (LPS mm) after checking duplicates, gaps and shear."""
    along = positions @ normal
    gaps = np.diff(along)
    n = len(stack)
    tolerance = max(GAP_TOLERANCE_MM, 0.01 * (along[-1] - along[0]) / (n - 1))
    duplicate = np.flatnonzero(gaps < tolerance)
    if duplicate.size:
        i = int(duplicate[0])
        raise SliceGeometryError(
            f"two slices at the same position ({along[i]:.3f} mm along the slice normal); "
            f"the other is {stack[i + 1].path}",
            path=stack[i].path,
            field=_POSITION,
        )
    step = (positions[-1] - positions[0]) / (n - 1)
    deviation = np.linalg.norm(positions - positions[0] - np.arange(n)[:, None] * step, axis=1)
    worst = int(np.argmax(deviation))
    if deviation[worst] > tolerance:
        raise SliceGeometryError(
            f"uneven slice spacing: gaps from {gaps.min():.4g} to {gaps.max():.4g} mm "
            f"(mean {(along[-1] - along[0]) / (n - 1):.4g} mm); this slice is "
            f"{deviation[worst]:.4g} mm off the regular grid",
            path=stack[worst].path,
            field=_POSITION,
        )
    lateral = step - (step @ normal) * normal
    if np.linalg.norm(lateral) * (n - 1) > tolerance and not allow_tilt:
        angle = math.degrees(math.atan2(np.linalg.norm(lateral), step @ normal))
        raise SliceGeometryError(
            f"slices are sheared by {angle:.3g} degrees (gantry tilt; GantryDetectorTilt = "
            f"{stack[0].tilt_deg}); pass allow_tilt=True to accept a sheared affine",
            path=stack[0].path,
            field=f"{_POSITION} / ImageOrientationPatient (0020,0037)",
        )
    return step

