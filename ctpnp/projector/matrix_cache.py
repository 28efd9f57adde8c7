"""A disk cache of system matrices, keyed by the ASTRA geometry that defines them.

Reading a system matrix out of ASTRA takes about 25 s per GiB; reading it back
from disk takes a memory map. An entry is a folder named by the SHA-256 of
ASTRA's version, the projector type and ASTRA's own volume and projection
geometry (every number of it), so a change anywhere upstream (ODL's geometry
conventions, ctpnp's virtual detector, ASTRA's kernels) gives a new key, never
a stale matrix. It holds the CSR arrays (``data.npy`` float32, ``indices.npy``
and ``indptr.npy`` int32) and ``meta.json`` (shape, block boundaries). Entries
are written to a temporary folder and renamed into place; loading checks the
arrays' consistency (row pointers, column range) before any product can read
them, and a bad entry is removed and rebuilt.

Folder: ``$CTPNP_MATRIX_CACHE``, else ``$XDG_CACHE_HOME/ctpnp/matrices``, else
``~/.cache/ctpnp/matrices``; ``CTPNP_MATRIX_CACHE=off`` turns the cache off.
The least recently used entries are removed beyond ``$CTPNP_MATRIX_CACHE_MIB``
(default 4096 MiB) in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import astra
import numpy as np

from ctpnp.atomic import staged_dir

FORMAT_VERSION = 2
DEFAULT_CACHE_MIB = 4096.0


def cache_folder() -> Path | None:
    """The cache folder (not created here), or ``None`` when the cache is off."""
    configured = os.environ.get("CTPNP_MATRIX_CACHE", "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ctpnp" / "matrices"


def matrix_key(projector_type: str, volume_geometry: dict, projection_geometry: dict) -> str:
    """SHA-256 (hex) of what defines the matrix: ASTRA's version, projector and geometries."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT_VERSION, "astra": astra.__version__,
                              "projector": projector_type}).encode())
    for geometry in (volume_geometry, projection_geometry):
        for name in sorted(geometry):
            value = geometry[name]
            digest.update(name.encode())
            if isinstance(value, np.ndarray):
                digest.update(str(value.dtype).encode() + str(value.shape).encode())
                digest.update(np.ascontiguousarray(value).tobytes())
            elif isinstance(value, dict):
                digest.update(json.dumps(value, sort_keys=True, default=repr).encode())
            else:
                digest.update(repr(value).encode())
    return digest.hexdigest()


def load(key: str, shape: tuple[int, int]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray] | None:
    """The cached CSR arrays of ``key`` (memory-mapped), ``None`` when absent or invalid.

    Returns:
        ``(data, indices, indptr, n_columns, block_rows)``, the arguments of
        :class:`~ctpnp.projector.matrix.SystemMatrix`.
    """
    folder = cache_folder()
    if folder is None or not (folder / key / "meta.json").is_file():
        return None
    entry = folder / key
    try:
        arrays = _read(entry, shape)
    except (OSError, ValueError, KeyError):
        shutil.rmtree(entry, ignore_errors=True)  # written atomically, so damaged on disk
        return None
    _touch(entry)
    return arrays


def store(key: str, matrix) -> Path | None:
    """Write a :class:`~ctpnp.projector.matrix.SystemMatrix` under ``key`` (atomically),
    then trim the cache; returns the entry's folder."""
    folder = cache_folder()
    if folder is None:
        return None
    entry = folder / key
    try:
        with staged_dir(entry) as staging:
            for name in ("data", "indices", "indptr"):
                np.save(staging / f"{name}.npy", getattr(matrix, name))
            meta = {"format": FORMAT_VERSION, "shape": list(matrix.shape),
                    "block_rows": matrix.block_rows.tolist()}
            (staging / "meta.json").write_text(json.dumps(meta) + "\n")
    except FileExistsError:  # another process stored it meanwhile
        return entry
    _touch(entry)
    _trim(folder, keep=entry)
    return entry


def _touch(entry: Path) -> None:
    """Mark ``entry`` most recently used (to the nanosecond: file times may be coarser)."""
    now = time.time_ns()
    os.utime(entry / "meta.json", ns=(now, now))


def _read(entry: Path, shape: tuple[int, int]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    meta = json.loads((entry / "meta.json").read_text())
    if meta["format"] != FORMAT_VERSION or tuple(meta["shape"]) != tuple(shape):
        raise ValueError(f"{entry}: meta.json describes another matrix")
    data = np.load(entry / "data.npy", mmap_mode="r", allow_pickle=False)
    indices = np.load(entry / "indices.npy", mmap_mode="r", allow_pickle=False)
    indptr = np.load(entry / "indptr.npy", allow_pickle=False)
    n_rows, n_columns = shape
    if (data.dtype != np.float32 or indices.dtype != np.int32 or indptr.dtype != np.int32
            or indptr.shape != (n_rows + 1,) or data.shape != indices.shape
            or indptr[0] != 0 or indptr[-1] != data.shape[0] or np.any(np.diff(indptr) < 0)
            or (indices.size and (indices.min() < 0 or indices.max() >= n_columns))):
        raise ValueError(f"{entry}: inconsistent CSR arrays")
    block_rows = np.asarray(meta["block_rows"], dtype=np.int64)
    if block_rows[0] != 0 or block_rows[-1] != n_rows or np.any(np.diff(block_rows) <= 0):
        raise ValueError(f"{entry}: meta.json block_rows do not cover the rows")
    return data, indices, indptr, n_columns, block_rows


def _trim(folder: Path, keep: Path) -> None:
    """Remove the least recently used entries beyond ``$CTPNP_MATRIX_CACHE_MIB``."""
    limit_mib = float(os.environ.get("CTPNP_MATRIX_CACHE_MIB", DEFAULT_CACHE_MIB))
    entries = [path.parent for path in folder.glob("*/meta.json")
               if not path.parent.name.startswith(".")]  # not the ones being written
    sizes = {entry: sum(f.stat().st_size for f in entry.iterdir()) / 2**20 for entry in entries}
    total = sum(sizes.values())
    for entry in sorted(entries, key=lambda e: (e / "meta.json").stat().st_mtime):
        if total <= limit_mib:
            break
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)
            total -= sizes[entry]
