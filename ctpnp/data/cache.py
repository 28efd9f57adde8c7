"""The cache folder of the real-CT corpus: one HU volume and one JSON record per patient.

Folder: ``cache_dir`` if given, else ``$CTPNP_DATA``, else
``$XDG_CACHE_HOME/ctpnp/data``, else ``~/.cache/ctpnp/data``. Per patient:

- ``<patient>.npy``: ``(z, y, x)`` HU, int16 where every value is an integer,
  else float32; slice ``k`` is axial, rows anterior to posterior, columns from
  the patient's right to left; below −1024 HU (outside-FOV padding) clipped to −1024.
- ``<patient>.json``: the record (source, registry, package, version, licence,
  sha256 of the download, ``pixel_mm``, ``slice_mm``, shape, HU range, when it was fetched).

Both are written to a temporary file and renamed, the record last: a patient
is in the cache exactly when its record is, and an interrupted fetch leaves
nothing that counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctpnp.atomic import staged_file
from ctpnp.data.errors import DataSourceError

__all__ = ["Volume", "cache_folder", "cached", "load_patient", "read_record", "write_patient"]

RECORD_VERSION = 1


@dataclass(frozen=True)
class Volume:
    """One patient's CT volume from the cache.

    Attributes:
        hu: ``(z, y, x)`` float32 Hounsfield units, axial slices in display orientation
            (rows anterior to posterior, columns patient right to left), ``z`` feet to head.
        pixel_mm: in-plane pixel size in mm.
        slice_mm: slice spacing in mm.
        patient: the corpus id, e.g. ``"lung1"``.
        anatomy: what the volume shows.
        licence: the licence of the package it came from, with caveats.
        voxel_assumed: True when the file stored no voxel size (``pixel_mm`` is assumed).
    """

    hu: np.ndarray
    pixel_mm: float
    slice_mm: float
    patient: str
    anatomy: str
    licence: str
    voxel_assumed: bool


def cache_folder(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: ``cache_dir``, ``$CTPNP_DATA``, ``$XDG_CACHE_HOME/ctpnp/data`` or
    ``~/.cache/ctpnp/data`` (the first given; not created here)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("CTPNP_DATA"):
        return Path(os.environ["CTPNP_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ctpnp" / "data"


def read_record(patient: str, cache_dir: Path | str | None = None) -> dict | None:
    """The cache record of ``patient``, ``None`` when it is not (completely) in the cache."""
    folder = cache_folder(cache_dir)
    record_path = folder / f"{patient}.json"
    if not record_path.is_file() or not (folder / f"{patient}.npy").is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataSourceError(patient, f"unreadable cache record: {error}",
                              path=record_path) from None
    return record if record.get("record_version") == RECORD_VERSION else None


def cached(cache_dir: Path | str | None = None) -> list[dict]:
    """The records of every patient in the cache, sorted by patient id."""
    folder = cache_folder(cache_dir)
    if not folder.is_dir():
        return []
    records = (read_record(p.stem, folder) for p in sorted(folder.glob("*.json")))
    return [r for r in records if r is not None]


def write_patient(hu: np.ndarray, record: dict, cache_dir: Path | str | None = None) -> dict:
    """Write ``hu`` (``(z, y, x)``, int16 or float32) and ``record`` (must name ``"patient"``)
    atomically into the cache; the record last. Returns the record as written."""
    folder = cache_folder(cache_dir)
    patient = record["patient"]
    volume_path = folder / f"{patient}.npy"
    with staged_file(volume_path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, hu, allow_pickle=False)
    record = {**record, "record_version": RECORD_VERSION}
    with staged_file(folder / f"{patient}.json") as temporary:
        temporary.write_text(json.dumps(record, indent=1))
    return record


def load_patient(patient: str, cache_dir: Path | str | None = None) -> Volume:
    """Load one patient's volume from the cache (see :class:`Volume`).

    Raises:
        DataSourceError: the patient is not in the cache (fetch it first), or its
            cached volume does not match its record.
    """
    folder = cache_folder(cache_dir)
    record = read_record(patient, folder)
    if record is None:
        raise DataSourceError(patient, f"not in the cache {folder}: fetch it first "
                              f"(ctpnp.data.fetch([{patient!r}]))")
    path = folder / f"{patient}.npy"
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataSourceError(patient, f"unreadable cached volume: {error}", path=path) from None
    if list(values.shape) != record["shape"]:
        raise DataSourceError(patient, f"cached volume {values.shape} is not the recorded "
                              f"{tuple(record['shape'])}: fetch it again", path=path)
    return Volume(hu=values.astype(np.float32), pixel_mm=record["pixel_mm"],
                  slice_mm=record["slice_mm"], patient=patient, anatomy=record["anatomy"],
                  licence=record["licence"], voxel_assumed=record["voxel_assumed"])
