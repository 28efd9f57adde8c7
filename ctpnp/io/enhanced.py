"""Slice records of Enhanced (multi-frame) CT: one record per frame.

Per-frame geometry and rescale live in functional group macros, either in the
frame's item of PerFrameFunctionalGroupsSequence or, when shared by all frames,
in SharedFunctionalGroupsSequence; the frame's own item wins.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from ctpnp.io.errors import MissingTagError
from ctpnp.io.headers import (
    SliceRecord,
    checked_orientation,
    checked_rescale,
    checked_spacing,
    optional_float,
    read_floats,
    read_int,
    read_value,
    series_fields,
)

__all__ = ["enhanced_records"]


def _macro(
    ds: Dataset, frame_item: Dataset, keyword: str, path: Path, frame: int
) -> tuple[Dataset, str]:
    """The first item of functional group ``keyword`` for a frame, and its name for messages."""
    per_frame = f"PerFrameFunctionalGroupsSequence[{frame}].{keyword}"
    if keyword in frame_item:
        sequence, name = frame_item[keyword].value, per_frame
    else:
        shared = read_value(ds, "SharedFunctionalGroupsSequence", path)[0]
        if keyword not in shared:
            raise MissingTagError("is missing (neither per-frame nor shared)", path=path,
                                  field=per_frame)
        sequence, name = shared[keyword].value, f"SharedFunctionalGroupsSequence.{keyword}"
    if not sequence:
        raise MissingTagError("is empty", path=path, field=name)
    return sequence[0], f"{name}."


def _is_localizer(ds: Dataset, frame_item: Dataset, path: Path, frame: int) -> bool:
    try:
        item, prefix = _macro(ds, frame_item, "CTImageFrameTypeSequence", path, frame)
    except MissingTagError:
        return False
    frame_type = read_value(item, "FrameType", path, prefix)
    return "LOCALIZER" in [str(v).upper() for v in frame_type]


def enhanced_records(ds: Dataset, path: Path) -> tuple[list[SliceRecord], int]:
    """Records of the non-localizer frames of an Enhanced CT file, and the number of localizers."""
    n_frames = read_int(ds, "NumberOfFrames", path)
    per_frame = read_value(ds, "PerFrameFunctionalGroupsSequence", path)
    if len(per_frame) != n_frames:
        raise MissingTagError(
            f"has {len(per_frame)} items for NumberOfFrames = {n_frames}",
            path=path,
            field="PerFrameFunctionalGroupsSequence (5200,9230)",
        )
    common = series_fields(ds, path)
    records, localizers = [], 0
    for frame, item in enumerate(per_frame):
        if _is_localizer(ds, item, path, frame):
            localizers += 1
            continue
        position, pos_prefix = _macro(ds, item, "PlanePositionSequence", path, frame)
        orientation, ori_prefix = _macro(ds, item, "PlaneOrientationSequence", path, frame)
        measures, mea_prefix = _macro(ds, item, "PixelMeasuresSequence", path, frame)
        rescale, res_prefix = _macro(ds, item, "PixelValueTransformationSequence", path, frame)
        row, col = checked_orientation(orientation, path, ori_prefix)
        slope, intercept = checked_rescale(rescale, path, res_prefix)
        records.append(
            SliceRecord(
                frame=frame,
                position_mm=read_floats(position, "ImagePositionPatient", path, 3, pos_prefix),
                row_cosine=row,
                col_cosine=col,
                pixel_spacing_mm=checked_spacing(measures, path, mea_prefix),
                thickness_mm=optional_float(measures, "SliceThickness", path, mea_prefix),
                slope=slope,
                intercept=intercept,
                **common,
            )
        )
    return records, localizers
