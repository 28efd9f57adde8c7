"""Fetch the corpus into the cache: download each archive once, verify, extract HU volumes.

:func:`fetch` is what ``ctpnp data fetch`` runs and :func:`list_sources` what
``ctpnp data list`` shows. A patient already in the cache (its record naming
the archive's pinned sha256) is not fetched again, so re-runs work offline.
Downloads go to a temporary folder inside the cache, removed afterwards.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from ctpnp.data.cache import cache_folder, read_record, write_patient
from ctpnp.data.download import download, extract_member
from ctpnp.data.errors import DataFormatError, DataSourceError
from ctpnp.data.formats import read_inv3, read_mrc, read_nrrd
from ctpnp.data.sources import SOURCES, SPLITS, Source

__all__ = ["AIR_HU", "Progress", "fetch", "list_sources", "read_source_volume"]

AIR_HU = -1024.0
"""Values below this (scanners' outside-FOV padding, −2000 or −3024) are clipped to it."""

Progress = Callable[[str, str], object]
"""``progress(patient, message)``: what is happening to ``patient``, e.g. ``"fetching ..."``,
``"done"``."""

PIXEL_TOLERANCE = 1e-3
"""Relative difference allowed between a file's voxel size and :class:`Source`'s."""


def _read_dicom_slice(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A DICOM file, alone in its folder, as ``(1, H, W)`` HU and ``(slice, row, column)`` mm
    (the slice's thickness first), read by :func:`ctpnp.io.read_ct_series`: imported here,
    as ctpnp.io is the one home of pydicom and ``ctpnp.data`` never loads it on import."""
    from ctpnp.io import read_ct_series

    series = read_ct_series(path.parent)
    if [Path(f).resolve() for f in series.files] != [path.resolve()]:
        raise DataFormatError(path, "folder", f"{path.parent} holds other CT files")
    spacing = (series.slice_thickness_mm or series.spacing_mm[0], *series.spacing_mm[1:])
    return series.hu, spacing


def read_source_volume(source: Source, path: Path) -> tuple[np.ndarray, float, float]:
    """Read the member file ``path`` of ``source`` as ``(z, y, x)`` HU in display orientation.

    Returns:
        ``(hu, pixel_mm, slice_mm)``: ``hu`` in the file's dtype (transposed and flipped as
        ``source`` says), not yet clipped; the voxel size from the file, or the
        table's assumption where the file stores none.

    Raises:
        DataFormatError: the file cannot be read, or its voxel size is not the table's.
    """
    readers = {"nrrd": read_nrrd, "inv3": read_inv3, "mrc": read_mrc, "dicom": _read_dicom_slice}
    values, spacing = readers[source.file_format](path)
    hu = values.transpose(source.transpose)
    if source.flip_rows:
        hu = hu[:, ::-1, :]
    if spacing is None or source.voxel_assumed:
        return np.ascontiguousarray(hu), source.pixel_mm, source.slice_mm
    slice_mm, row_mm, column_mm = (spacing[axis] for axis in source.transpose)
    expected = (source.slice_mm, source.pixel_mm, source.pixel_mm)
    if not np.allclose((slice_mm, row_mm, column_mm), expected, rtol=PIXEL_TOLERANCE):
        raise DataFormatError(path, "voxel size", f"({slice_mm}, {row_mm}, {column_mm}) mm is not"
                              f" the {expected} mm recorded for {source.patient}")
    return np.ascontiguousarray(hu), float(row_mm), float(slice_mm)


def _split_of(patient: str) -> str | None:
    return next((name for name, members in SPLITS.items() if patient in members), None)


def _record(source: Source, hu: np.ndarray, pixel_mm: float, slice_mm: float,
            clipped: int) -> dict:
    archive = source.archive
    return {
        "patient": source.patient, "anatomy": source.anatomy, "split": _split_of(source.patient),
        "archive": archive.name, "registry": archive.registry, "package": archive.package,
        "version": archive.version, "file": archive.filename, "sha256": archive.sha256,
        "member": source.member, "licence": archive.licence, "origin": archive.origin,
        "note": source.note, "pixel_mm": pixel_mm, "slice_mm": slice_mm,
        "voxel_assumed": source.voxel_assumed, "shape": list(hu.shape), "dtype": str(hu.dtype),
        "hu_min": float(hu.min()), "hu_max": float(hu.max()), "clipped_voxels": clipped,
        "orientation": "(z, y, x): z feet to head, rows anterior to posterior, columns "
                       "patient right to left",
        "fetched_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _store(source: Source, path: Path, folder: Path) -> dict:
    """Read, clip and write one patient from its extracted member ``path``; its record."""
    hu, pixel_mm, slice_mm = read_source_volume(source, path)
    clipped = int(np.count_nonzero(hu < AIR_HU))
    hu = np.maximum(hu, np.asarray(AIR_HU, dtype=hu.dtype))
    integral = hu.dtype.kind in "iu" or np.array_equal(hu, np.round(hu))
    hu = hu.astype(np.int16 if integral and hu.max() <= np.iinfo(np.int16).max else np.float32)
    return write_patient(hu, _record(source, hu, pixel_mm, slice_mm, clipped), folder)


def _is_cached(source: Source, folder: Path) -> dict | None:
    record = read_record(source.patient, folder)
    return record if record is not None and record["sha256"] == source.archive.sha256 else None


def fetch(names: Iterable[str] | None = None, cache_dir: Path | str | None = None,
          progress: Progress | None = None, *,
          sources: Mapping[str, Source] = SOURCES) -> list[dict]:
    """Bring the patients ``names`` (default: all of ``sources``) into the cache.

    Each archive needed is downloaded once with its package client, checked
    against its pinned sha256, and its patients are extracted as described in
    :mod:`ctpnp.data.cache`. Patients already cached are only reported.

    Args:
        names: patient ids of ``sources``.
        cache_dir: the cache folder (see :func:`~ctpnp.data.cache.cache_folder`).
        progress: called with ``(patient, message)`` at each step.
        sources: the table to fetch from (:data:`~ctpnp.data.sources.SOURCES`).

    Returns:
        The cache record of every requested patient, in the order asked.

    Raises:
        DataSourceError: an unknown name, a failed download (no network), a file whose
            sha256 changed, an archive without the member; nothing of that archive is cached.
        DataFormatError: a member that cannot be read as its format.
    """
    wanted = list(sources) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in sources]
    if unknown:
        raise DataSourceError(", ".join(unknown), f"unknown patient; known: {', '.join(sources)}")
    folder = cache_folder(cache_dir)
    report = progress or (lambda patient, message: None)
    records = {}
    missing: dict[str, list[Source]] = {}
    for name in wanted:
        records[name] = _is_cached(sources[name], folder)
        if records[name] is None:
            missing.setdefault(sources[name].archive.name, []).append(sources[name])
        else:
            report(name, f"in the cache {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    for group in missing.values():
        archive = group[0].archive
        work = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
        try:
            for source in group:
                report(source.patient, f"fetching {archive.filename} with {archive.client}")
            path = download(archive, work)
            for source in group:
                report(source.patient, f"extracting {source.member}")
                member = extract_member(path, source.member, work)
                records[source.patient] = _store(source, member, folder)
                report(source.patient, "done")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return [records[name] for name in wanted]


def list_sources(cache_dir: Path | str | None = None, *,
                 sources: Mapping[str, Source] = SOURCES) -> list[dict]:
    """One row per patient of ``sources`` for ``ctpnp data list``: ``patient``, ``anatomy``,
    ``split``, ``registry``, ``package``, ``version``, ``licence``, ``pixel_mm``,
    ``slice_mm``, ``cached`` (bool) and, when cached, ``shape``, ``hu_min``, ``hu_max``."""
    folder = cache_folder(cache_dir)
    rows = []
    for source in sources.values():
        record = _is_cached(source, folder)
        row = {"patient": source.patient, "anatomy": source.anatomy,
               "split": _split_of(source.patient), "registry": source.archive.registry,
               "package": source.archive.package, "version": source.archive.version,
               "licence": source.archive.licence, "pixel_mm": source.pixel_mm,
               "slice_mm": source.slice_mm, "cached": record is not None}
        if record is not None:
            row.update(shape=record["shape"], hu_min=record["hu_min"], hu_max=record["hu_max"])
        rows.append(row)
    return rows
