"""Read a CT image series from a folder into a HU volume with its affine.

The folder is scanned recursively (:mod:`ctpnp.io.scan`), CT slices are grouped
into stacks and ordered along the slice normal (:mod:`ctpnp.io.stack`), and the
chosen stack's pixel data is decoded and rescaled to HU slice by slice. When the
folder holds several stacks the caller must choose one; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ctpnp.io.errors import DicomInputError, NoCTSeriesError, SeriesChoiceError
from ctpnp.io.headers import SliceRecord
from ctpnp.io.pixels import decode_frames, hounsfield
from ctpnp.io.scan import ScanResult, read_dataset, scan_folder
from ctpnp.io.stack import group_stacks, stack_affine

__all__ = ["CTSeries", "SeriesSummary", "list_ct_series", "read_ct_series", "slice_z_mm"]


@dataclass(frozen=True)
class CTSeries:
    """A CT volume read from DICOM.

    Attributes:
        hu: (slices, H, W) float32 Hounsfield units; slice ``k`` is the ``k``-th
            along the slice normal, ``H`` runs down the rows and ``W`` along them.
        affine: (4, 4) voxel ``(k, i, j)`` to RAS mm (see :mod:`ctpnp.io.affine`).
        spacing_mm: ``(slice, row, column)`` spacing in mm.
        datasets: the source data sets (headers; pixel data dropped), one per file,
            in slice order; an Enhanced CT series has a single one.
        files: the source file of each slice, (slices,).
        series_uid: SeriesInstanceUID.
        slice_thickness_mm: nominal SliceThickness of the first slice, ``None`` if absent.
    """

    hu: np.ndarray
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    datasets: list[Dataset]
    files: list[Path]
    series_uid: str
    slice_thickness_mm: float | None


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:64]


@dataclass(frozen=True)
class SeriesSummary:
    """One CT stack of a folder, as listed for the user to choose from."""

    index: int
    series_uid: str
    series_number: int | None
    description: str
    n_slices: int
    rows: int
    columns: int
    first_file: Path

    def __str__(self) -> str:
        number = "-" if self.series_number is None else self.series_number
        return (
            f"[{self.index}] series {number} {_printable(self.description)!r}: "
            f"{self.n_slices} slices of {self.rows}x{self.columns}, "
            f"SeriesInstanceUID {_printable(self.series_uid)} (e.g. {self.first_file})"
        )


def _summary(index: int, stack: list[SliceRecord]) -> SeriesSummary:
    first = stack[0]
    return SeriesSummary(index, first.series_uid, first.series_number, first.description,
                         len(stack), first.rows, first.columns, first.path)


def _stacks(scan: ScanResult, folder: Path) -> list[list[SliceRecord]]:
    """The CT stacks of a scan; with none, the first invalid CT file's error or NoCTSeriesError."""
    stacks = group_stacks(scan.records)
    if stacks:
        return stacks
    if scan.invalid:
        raise scan.invalid[0][1]
    raise NoCTSeriesError(
        f"no CT image series found among {scan.files_seen} files "
        f"(skipped: {scan.skipped_text()})",
        path=folder,
    )


def list_ct_series(folder: Path | str) -> list[SeriesSummary]:
    """Summaries of the CT stacks under ``folder``; raises :class:`NoCTSeriesError` if none."""
    folder = Path(folder)
    return [_summary(i, s) for i, s in enumerate(_stacks(scan_folder(folder), folder))]


def _choose(scan: ScanResult, series: int | str | None, folder: Path) -> list[SliceRecord]:
    """The stack the caller asked for.

    A CT file of the chosen series (or of unknown series) that could not be
    turned into a slice record raises its own error: the stack would miss it.
    """
    stacks = _stacks(scan, folder)
    if series is None and len(stacks) == 1:
        chosen = stacks[0]
    elif isinstance(series, int) and 0 <= series < len(stacks):
        chosen = stacks[series]
    elif isinstance(series, str) and [s[0].series_uid for s in stacks].count(series) == 1:
        chosen = next(s for s in stacks if s[0].series_uid == series)
    else:
        chosen = None
    uid = chosen[0].series_uid if chosen else series
    for invalid_uid, error in scan.invalid:
        if invalid_uid in (uid, ""):  # "": could belong to any series, the chosen one too
            raise error
    if chosen:
        return chosen
    problem = (
        f"{len(stacks)} CT series found; choose one with series=<index or SeriesInstanceUID>:"
        if series is None
        else f"series={series!r} does not name exactly one of the {len(stacks)} CT series:"
    )
    raise SeriesChoiceError(problem, path=folder, series=[_summary(i, s) for i, s in
                                                          enumerate(stacks)])


def _load(path: Path) -> tuple[Dataset, np.ndarray]:
    """A file's data set (pixel data dropped) and its stored frames."""
    ds = read_dataset(path, pixels=True)
    try:
        frames = decode_frames(ds, path)
    except DicomInputError:
        raise
    except Exception as exc:  # lazy decoding of damaged header values inside pydicom
        raise DicomInputError(f"cannot be read ({type(exc).__name__}: {exc})", path=path) from exc
    del ds.PixelData
    return ds, frames


def read_ct_series(
    folder: Path | str, series: int | str | None = None, *, allow_tilt: bool = False
) -> CTSeries:
    """Read one CT image series from ``folder`` (searched recursively).

    Args:
        folder: a folder of DICOM files (any names, any nesting, with or without preamble).
        series: which series when there are several: an index of
            :func:`list_ct_series` or a SeriesInstanceUID.
        allow_tilt: accept slices sheared by gantry tilt; the affine is then sheared.

    Returns:
        The volume in HU with its RAS affine; see :class:`CTSeries`.

    Raises:
        DicomInputError: for every problem with the input; the subclass says
            which (no series, several series, missing tags, pixel data, geometry).
    """
    folder = Path(folder)
    stack = _choose(scan_folder(folder), series, folder)
    affine, spacing = stack_affine(stack, allow_tilt=allow_tilt)
    first = stack[0]
    hu = np.empty((len(stack), first.rows, first.columns), dtype=np.float32)
    datasets: dict[Path, Dataset] = {}
    current: tuple[Path, np.ndarray] | None = None
    for k, record in enumerate(stack):
        if current is None or current[0] != record.path:
            ds, frames = _load(record.path)
            datasets.setdefault(record.path, ds)
            current = (record.path, frames)
        hu[k] = hounsfield(current[1][record.frame], record)
    return CTSeries(
        hu=hu,
        affine=affine,
        spacing_mm=spacing,
        datasets=list(datasets.values()),
        files=[r.path for r in stack],
        series_uid=first.series_uid,
        slice_thickness_mm=first.thickness_mm,
    )


def slice_z_mm(series: CTSeries) -> np.ndarray:
    """``(slices,)`` superior position (mm) of each slice's centre, from the series affine."""
    slices, height, width = series.hu.shape
    centres = np.stack([np.arange(slices), np.full(slices, (height - 1) / 2),
                        np.full(slices, (width - 1) / 2), np.ones(slices)])
    return (series.affine @ centres)[2]
