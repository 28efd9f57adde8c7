"""Typed, checked access to DICOM header values and the per-slice record built from them.

pydicom converts raw element values lazily, so a corrupted file can fail on the
first access of any tag; every read here turns such failures, absent or empty
tags and wrong value counts into :class:`MissingTagError` naming file and tag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from ctpnp.io.errors import MissingTagError

__all__ = [
    "PIXEL_SPACING_RANGE_MM",
    "RESCALE_LIMIT",
    "SliceRecord",
    "checked_orientation",
    "checked_rescale",
    "checked_spacing",
    "classic_record",
    "field_name",
    "optional_float",
    "optional_int",
    "optional_text",
    "read_floats",
    "read_int",
    "read_text",
    "read_value",
    "series_fields",
]

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class SliceRecord:
    """Header facts of one 2D slice: a single-frame file or one frame of a multi-frame file.

    Positions and directions are in the DICOM patient frame (LPS, mm).
    ``row_cosine`` points along a row (increasing column index), ``col_cosine``
    down a column (increasing row index); ``pixel_spacing_mm`` is
    ``(between rows, between columns)`` as in PixelSpacing.
    """

    path: Path
    frame: int
    series_uid: str
    sop_uid: str
    series_number: int | None
    description: str
    rows: int
    columns: int
    position_mm: Vec3
    row_cosine: Vec3
    col_cosine: Vec3
    pixel_spacing_mm: tuple[float, float]
    thickness_mm: float | None
    slope: float
    intercept: float
    tilt_deg: float


def field_name(keyword: str, prefix: str = "") -> str:
    """``"ImagePositionPatient (0020,0032)"``, optionally behind a sequence path prefix."""
    tag = tag_for_keyword(keyword)
    name = keyword if tag is None else f"{keyword} {Tag(tag)}"
    return f"{prefix}{name}"


def read_value(ds: Dataset, keyword: str, path: Path, prefix: str = "") -> Any:
    """The value of ``keyword``; raises :class:`MissingTagError` if absent, empty or undecodable."""
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom decodes raw values here; any failure means a bad value
        raise MissingTagError(
            f"cannot be decoded ({type(exc).__name__}: {exc})",
            path=path,
            field=field_name(keyword, prefix),
        ) from exc
    if value is None or value == "" or (isinstance(value, MultiValue | list) and not value):
        raise MissingTagError("is missing or empty", path=path, field=field_name(keyword, prefix))
    return value


def read_floats(ds: Dataset, keyword: str, path: Path, count: int, prefix: str = "") -> tuple:
    """``count`` finite numbers from a (multi-valued) numeric tag."""
    value = read_value(ds, keyword, path, prefix)
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    field = field_name(keyword, prefix)
    if len(items) != count:
        raise MissingTagError(f"has {len(items)} values, expected {count}", path=path, field=field)
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise MissingTagError(f"is not numeric: {value!r:.60}", path=path, field=field) from exc
    if not all(math.isfinite(v) for v in numbers):
        raise MissingTagError(f"is not finite: {numbers}", path=path, field=field)
    return numbers


def read_int(ds: Dataset, keyword: str, path: Path, prefix: str = "", minimum: int = 1) -> int:
    """An integer tag that must be at least ``minimum``."""
    (number,) = read_floats(ds, keyword, path, 1, prefix)
    if number != int(number) or number < minimum:
        raise MissingTagError(
            f"must be an integer >= {minimum}, got {number}",
            path=path,
            field=field_name(keyword, prefix),
        )
    return int(number)


def read_text(ds: Dataset, keyword: str, path: Path) -> str:
    """A required single text value (e.g. a UID)."""
    return str(read_value(ds, keyword, path)).strip()


def optional_text(ds: Dataset, keyword: str) -> str:
    """A text value, or ``""`` when absent or undecodable (for descriptions only)."""
    try:
        value = ds.get(keyword)
    except Exception:  # descriptive tag: a bad value must not stop the read
        return ""
    return "" if value is None else str(value).strip()


def optional_float(ds: Dataset, keyword: str, path: Path, prefix: str = "") -> float | None:
    """A number, ``None`` when absent or empty; a present but bad value still raises."""
    try:
        present = ds.get(keyword) not in (None, "")
    except Exception:  # undecodable: let read_floats name it
        present = True
    return read_floats(ds, keyword, path, 1, prefix)[0] if present else None


def optional_int(ds: Dataset, keyword: str) -> int | None:
    """An integer for display (SeriesNumber), ``None`` when absent or unusable."""
    try:
        return int(ds.get(keyword))
    except Exception:  # display only
        return None


def checked_orientation(
    ds: Dataset, path: Path, prefix: str = ""
) -> tuple[Vec3, Vec3]:
    """Row and column direction cosines from ImageOrientationPatient, checked orthonormal."""
    iop = read_floats(ds, "ImageOrientationPatient", path, 6, prefix)
    row, col = iop[:3], iop[3:]
    norms = (math.hypot(*row), math.hypot(*col))
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    if max(abs(n - 1.0) for n in norms) > 1e-3 or abs(dot) > 1e-3:
        raise MissingTagError(
            f"is not two orthogonal unit vectors: {iop}",
            path=path,
            field=field_name("ImageOrientationPatient", prefix),
        )
    return row, col


PIXEL_SPACING_RANGE_MM = (0.05, 10.0)
"""PixelSpacing accepted (mm, exclusive): outside it no CT image is plausible."""

RESCALE_LIMIT = 1e6
"""Largest RescaleSlope and |RescaleIntercept| accepted: no HU or line-integral scale needs more."""


def checked_spacing(ds: Dataset, path: Path, prefix: str = "") -> tuple[float, float]:
    """PixelSpacing ``(between rows, between columns)`` (mm), in :data:`PIXEL_SPACING_RANGE_MM`."""
    spacing = read_floats(ds, "PixelSpacing", path, 2, prefix)
    low, high = PIXEL_SPACING_RANGE_MM
    if not all(low < value < high for value in spacing):
        raise MissingTagError(
            f"is {spacing} mm: a CT pixel is between {low} and {high} mm", path=path,
            field=field_name("PixelSpacing", prefix))
    return spacing


def checked_rescale(ds: Dataset, path: Path, prefix: str = "") -> tuple[float, float]:
    """``(RescaleSlope, RescaleIntercept)``: value = stored * slope + intercept.

    The slope must be positive (a negative one inverts the image) and neither it nor
    the intercept's magnitude may exceed :data:`RESCALE_LIMIT`.
    """
    (slope,) = read_floats(ds, "RescaleSlope", path, 1, prefix)
    if not 0 < slope <= RESCALE_LIMIT:
        problem = ("is not positive (it would invert the image)" if slope <= 0
                   else f"is beyond {RESCALE_LIMIT:g}: not a CT scale")
        raise MissingTagError(f"{slope:g} {problem}", path=path,
                              field=field_name("RescaleSlope", prefix))
    (intercept,) = read_floats(ds, "RescaleIntercept", path, 1, prefix)
    if abs(intercept) > RESCALE_LIMIT:
        raise MissingTagError(f"{intercept:g} is beyond +-{RESCALE_LIMIT:g}: not a CT offset",
                              path=path, field=field_name("RescaleIntercept", prefix))
    return slope, intercept


def series_fields(ds: Dataset, path: Path) -> dict[str, Any]:
    """The record fields shared by all frames of a file."""
    return {
        "path": path,
        "series_uid": read_text(ds, "SeriesInstanceUID", path),
        "sop_uid": optional_text(ds, "SOPInstanceUID"),
        "series_number": optional_int(ds, "SeriesNumber"),
        "description": optional_text(ds, "SeriesDescription"),
        "rows": read_int(ds, "Rows", path),
        "columns": read_int(ds, "Columns", path),
        "tilt_deg": optional_float(ds, "GantryDetectorTilt", path) or 0.0,
    }


def classic_record(ds: Dataset, path: Path) -> SliceRecord:
    """The record of a single-frame CT Image Storage file."""
    row, col = checked_orientation(ds, path)
    slope, intercept = checked_rescale(ds, path)
    return SliceRecord(
        frame=0,
        position_mm=read_floats(ds, "ImagePositionPatient", path, 3),
        row_cosine=row,
        col_cosine=col,
        pixel_spacing_mm=checked_spacing(ds, path),
        thickness_mm=optional_float(ds, "SliceThickness", path),
        slope=slope,
        intercept=intercept,
        **series_fields(ds, path),
    )
