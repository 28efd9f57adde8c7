"""The private tags of DICOM-CT-PD and their explicit decoding and encoding.

Without a registered private dictionary pydicom returns these elements of an
implicit-VR file as raw bytes (VR ``UN``); explicit-VR files carry their VR.
Both are decoded here: ``FL`` as little-endian float32, ``US`` as little-endian
uint16, ``DS`` and ``CS`` as text. A number is accepted as FL or DS whichever
the table says, because writers differ (WaterAttenuationCoefficient is DS in
the published table and FreeCT's dictionary, FL in some writers); raw bytes
that can only be decimal text are DS, those that can only be binary are
binary, and the published VR decides between the two. Elements
are found by their tag number, whatever their private creator says, because
public files and dictionaries differ in creator names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ctpnp.io.errors import MissingTagError

__all__ = [
    "CREATOR",
    "TAGS",
    "PrivateTag",
    "put_private",
    "read_private_numbers",
    "read_private_text",
    "value_type",
]

CREATOR = "DICOM-CT-PD"
"""Private creator written into every private group by :func:`put_private`."""


@dataclass(frozen=True)
class PrivateTag:
    """One DICOM-CT-PD element: its tag number, the name of the published table and VR."""

    tag: int
    keyword: str
    vr: str

    @property
    def field(self) -> str:
        """``"NumberofDetectorRows (7029,1010)"``, as errors name it."""
        return f"{self.keyword} {Tag(self.tag)}"


def _tags(*items: tuple[int, str, str]) -> dict[str, PrivateTag]:
    return {keyword: PrivateTag(tag, keyword, vr) for tag, keyword, vr in items}


TAGS = _tags(
    (0x70291010, "NumberofDetectorRows", "US"),
    (0x70291011, "NumberofDetectorColumns", "US"),
    (0x70291002, "DetectorElementTransverseSpacing", "FL"),
    (0x70291006, "DetectorElementAxialSpacing", "FL"),
    (0x7029100B, "DetectorShape", "CS"),
    (0x70311001, "DetectorFocalCenterAngularPosition", "FL"),
    (0x70311002, "DetectorFocalCenterAxialPosition", "FL"),
    (0x70311003, "DetectorFocalCenterRadialDistance", "FL"),
    (0x70311031, "ConstantRadialDistance", "FL"),
    (0x70311033, "DetectorCentralElement", "FL"),
    (0x7033100B, "SourceAngularPositionShift", "FL"),
    (0x7033100C, "SourceAxialPositionShift", "FL"),
    (0x7033100D, "SourceRadialDistanceShift", "FL"),
    (0x7033100E, "FlyingFocalSpotMode", "CS"),
    (0x70331013, "NumberofSourceAngularSteps", "US"),
    (0x70331065, "PhotonStatistics", "FL"),
    (0x70371009, "TypeofProjectionData", "CS"),
    (0x7037100A, "TypeofProjectionGeometry", "CS"),
    (0x70391009, "LogFlag", "CS"),
    (0x70411001, "WaterAttenuationCoefficient", "DS"),
    (0x00180061, "WaterAttenuationCoefficient (older files)", "DS"),
)
"""DICOM-CT-PD elements by keyword (Moen et al. 2021, Table IV)."""

_BINARY = {"FL": "<f4", "US": "<u2"}


def _raw(ds: Dataset, tag: PrivateTag, path: Path) -> object | None:
    """The element's value (bytes for unknown VR), ``None`` when absent or empty."""
    try:
        element = ds.get(tag.tag)
        value = None if element is None else element.value
    except Exception as exc:  # pydicom converts lazily; a damaged value fails here
        raise MissingTagError(f"cannot be read ({type(exc).__name__}: {exc})", path=path,
                              field=tag.field) from exc
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return None
    return value


_DECIMAL_TEXT = frozenset(b"0123456789+-.eE \\\x00")
"""Bytes of DS/IS text (digits, sign, point, exponent, padding, value separator)."""


def value_type(ds: Dataset, tag: PrivateTag) -> str | None:
    """How ``tag``'s value is encoded in ``ds``: ``"FL"``, ``"US"``, ``"DS"`` (text) or
    ``"binary"``; ``None`` when absent. See :func:`read_private_numbers`."""
    try:
        element = ds.get(tag.tag)
    except Exception:  # a damaged value: read_private_numbers names it
        return None
    if element is None or element.value is None:
        return None
    value = element.value
    if not isinstance(value, bytes):
        return "DS" if element.VR in ("DS", "IS") else element.VR
    return _bytes_type(value, tag)


def _bytes_type(value: bytes, tag: PrivateTag) -> str:
    """The encoding of raw bytes (implicit VR or UN): decimal text or little-endian binary
    (of the published VR, FL for a DS tag), whichever the bytes can be; the published VR
    when they can be both."""
    binary = tag.vr if tag.vr in _BINARY else "FL"
    text = set(value) <= _DECIMAL_TEXT and any(48 <= b <= 57 for b in value)
    whole = len(value) % np.dtype(_BINARY[binary]).itemsize == 0
    if text and whole:
        return "DS" if tag.vr not in _BINARY else binary
    return "DS" if text else binary


def read_private_numbers(ds: Dataset, tag: PrivateTag, path: Path, count: int | None = 1,
                         *, required: bool = True) -> np.ndarray | None:
    """Finite numbers of ``tag`` as float64 ``(count,)``; ``count=None`` accepts any number.

    A decimal tag may be written as FL or as DS whatever the published VR:
    explicit-VR files say which; raw bytes (implicit VR) are read as DS text when
    they can only be decimal text, as little-endian binary (the published VR, FL
    for a DS tag) when they can only be that, and by the published VR when they
    could be both. :func:`value_type` says which was found.

    Raises:
        MissingTagError: absent (when ``required``), wrong length, undecodable or not finite.
    """
    value = _raw(ds, tag, path)
    if value is None:
        if required:
            raise MissingTagError("is missing or empty", path=path, field=tag.field)
        return None
    found = _bytes_type(value, tag) if isinstance(value, bytes) else tag.vr
    try:
        if isinstance(value, bytes) and found in _BINARY:
            size = np.dtype(_BINARY[found]).itemsize
            if len(value) % size:
                raise ValueError(f"{len(value)} bytes is not a whole number of {found} values")
            numbers = np.frombuffer(value, dtype=_BINARY[found]).astype(np.float64)
        elif isinstance(value, bytes):
            text = value.decode("ascii").strip(" \x00")
            numbers = np.array([float(item) for item in text.split("\\")], dtype=np.float64)
        elif isinstance(value, str | int | float):
            numbers = np.array([float(value)], dtype=np.float64)
        else:
            numbers = np.array([float(item) for item in value], dtype=np.float64)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise MissingTagError(f"cannot be decoded as {found} ({exc})", path=path,
                              field=tag.field) from exc
    if count is not None and numbers.size != count:
        raise MissingTagError(f"has {numbers.size} values, expected {count}", path=path,
                              field=tag.field)
    if not np.isfinite(numbers).all():
        raise MissingTagError(f"is not finite: {numbers[:4]}", path=path, field=tag.field)
    return numbers


def read_private_text(ds: Dataset, tag: PrivateTag, path: Path, allowed: tuple[str, ...],
                      default: str | None = None) -> str:
    """A code string of ``tag`` (upper case), one of ``allowed``; ``default`` when absent."""
    value = _raw(ds, tag, path)
    if value is None:
        if default is None:
            raise MissingTagError("is missing or empty", path=path, field=tag.field)
        return default
    try:
        text = value.decode("ascii") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError as exc:
        raise MissingTagError("is not ASCII text", path=path, field=tag.field) from exc
    text = text.strip(" \x00").upper()
    if text not in allowed:
        raise MissingTagError(f"is {text[:40]!r}, expected one of {allowed}", path=path,
                              field=tag.field)
    return text


def put_private(ds: Dataset, tag: PrivateTag, value: object) -> None:
    """Add ``tag`` with ``value`` (and the group's private creator) to ``ds``, explicit VR."""
    group = tag.tag >> 16
    creator = Tag(group, 0x0010)
    if creator not in ds:
        ds.add_new(creator, "LO", CREATOR)
    if tag.vr == "FL":
        value = [float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float32))]
        value = value[0] if len(value) == 1 else value
    elif tag.vr == "DS":
        value = _decimal(float(value))
    ds.add_new(tag.tag, tag.vr, value)


def _decimal(value: float) -> str:
    """Shortest text that parses back to ``value`` exactly, if 16 characters allow it."""
    if not math.isfinite(value):
        raise ValueError(f"DS value must be finite, got {value}")
    text = repr(value)
    return text if len(text) <= 16 else f"{value:.10g}"
