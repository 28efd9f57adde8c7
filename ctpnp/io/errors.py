"""Errors raised for DICOM input that cannot be read as asked.

Every error is a :class:`DicomInputError` (itself a :class:`ValueError`) and its
message names the file (or folder) and the tag or field at fault, so a user can
find and fix the input. Subclasses let callers react to one kind of problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DicomInputError",
    "MissingCodecError",
    "MissingTagError",
    "NoCTSeriesError",
    "PixelDataError",
    "SeriesChoiceError",
    "SliceGeometryError",
    "UnreadableFileError",
]


class DicomInputError(ValueError):
    """DICOM input that cannot be used; ``path`` and ``field`` say where.

    Args:
        problem: what is wrong, in words.
        path: the file or folder concerned.
        field: the tag or field concerned, e.g. ``"ImagePositionPatient (0020,0032)"``.
    """

    def __init__(self, problem: str, *, path: Path | str | None = None, field: str | None = None):
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.field = field
        parts = [str(p) for p in (self.path, field) if p is not None]
        super().__init__(": ".join([*parts, problem]))


class UnreadableFileError(DicomInputError):
    """A file that looks like DICOM but whose data set cannot be parsed."""


class MissingTagError(DicomInputError):
    """A tag the reader needs is absent, empty or holds an unusable value."""


class PixelDataError(DicomInputError):
    """Pixel data that is missing, truncated or cannot be decoded."""


class MissingCodecError(PixelDataError):
    """Pixel data in a transfer syntax for which no decoder is installed."""


class SliceGeometryError(DicomInputError):
    """Slices that do not form a regular volume: duplicates, uneven gaps, tilt."""


class NoCTSeriesError(DicomInputError):
    """A folder that holds no CT image series (after skipping what is not one)."""


class SeriesChoiceError(DicomInputError):
    """Several CT series and no (or no matching) choice; ``series`` lists them."""

    def __init__(self, problem: str, *, path: Path | str, series: Sequence[object]):
        self.series = list(series)
        listing = "\n".join(f"  {s}" for s in self.series)
        super().__init__(f"{problem}\n{listing}", path=path)
