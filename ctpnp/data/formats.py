"""Small readers of the three volume formats the corpus comes in: NRRD, InVesalius 3, MRC.

Each reader returns the voxel values **in the file's storage order** (C order,
slowest axis first) and the voxel size along those axes, so that a caller
decides the orientation (:mod:`ctpnp.data.sources` records it per source):

- NRRD (``.nrrd``, attached data, raw or gzip): NRRD lists its axes fastest
  first (``sizes: X Y Z``), so the array is ``(Z, Y, X)`` and ``spacing_mm`` is
  the length of each ``space directions`` vector (or ``spacings``) in that order.
- InVesalius 3 project (``.inv3``: a gzip'd tar): ``main.plist`` gives the
  ``matrix`` member's dtype and shape ``(z, y, x)`` and ``spacing`` ``(x, y, z)``
  in mm; the member holds the raw little-endian values.
- MRC (2014 format): a 1024-byte header, an optional extended header, then
  ``nz`` sections of ``ny`` rows of ``nx`` values; the array is ``(nz, ny, nx)``.
  The voxel size is the cell size over the sampling (the MRC convention says
  Ångström; CT files put anything there), ``None`` when the cell is zero.

Bad input raises :class:`~ctpnp.data.errors.DataFormatError` naming the file and field.
"""

from __future__ import annotations

import gzip
import plistlib
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from ctpnp.data.errors import DataFormatError

__all__ = ["read_inv3", "read_mrc", "read_nrrd"]

NRRD_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2",
    "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2",
    "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "float": "f4", "double": "f8",
}
"""NRRD ``type`` names (the spellings the format allows) to numpy kinds and sizes."""

MRC_MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
"""MRC ``mode`` numbers of real-valued data to numpy kinds and sizes."""

MRC_HEADER_BYTES = 1024


def _nrrd_header(raw: bytes, path: Path) -> tuple[dict[str, str], int]:
    """The NRRD fields (``key: value`` lines) and the offset where the data begins."""
    if not raw.startswith(b"NRRD000"):
        raise DataFormatError(path, "magic", "not an NRRD file (no 'NRRD000x' first line)")
    end = raw.find(b"\n\n")
    if end < 0:
        raise DataFormatError(path, "header", "no blank line ends the header")
    fields = {}
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":=" in line:
            continue  # comments and key/value pairs carry no geometry
        key, sep, value = line.partition(": ")
        if not sep:
            raise DataFormatError(path, "header", f"unreadable line {line!r}")
        fields[key.strip().lower()] = value.strip()
    return fields, end + 2


def _nrrd_field(fields: dict[str, str], key: str, path: Path) -> str:
    if key not in fields:
        raise DataFormatError(path, key, "missing")
    return fields[key]


def _nrrd_spacing(fields: dict[str, str], ndim: int, path: Path) -> tuple[float, ...]:
    """Voxel size per NRRD axis (fastest first), from ``space directions`` or ``spacings``."""
    if "space directions" in fields:
        vectors = fields["space directions"].replace(")", " ").split("(")[1:]
        try:
            lengths = [float(np.linalg.norm([float(v) for v in vec.split(",")]))
                       for vec in vectors]
        except ValueError as error:
            raise DataFormatError(path, "space directions", str(error)) from None
    elif "spacings" in fields:
        lengths = [float(v) for v in fields["spacings"].split()]
    else:
        raise DataFormatError(path, "space directions", "missing (and no 'spacings')")
    if len(lengths) != ndim or not all(np.isfinite(lengths)) or min(lengths) <= 0:
        raise DataFormatError(path, "space directions",
                              f"{lengths} is not {ndim} positive lengths")
    return tuple(lengths)


def read_nrrd(path: Path | str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read an NRRD file with attached raw or gzip data.

    Returns:
        ``values``: the array, NRRD axes reversed (``sizes: X Y Z`` gives ``(Z, Y, X)``),
        native byte order; ``spacing_mm``: voxel size along the array's axes.
    """
    path = Path(path)
    raw = path.read_bytes()
    fields, offset = _nrrd_header(raw, path)
    if "data file" in fields or "datafile" in fields:
        raise DataFormatError(path, "data file", "detached data is not supported")
    kind = NRRD_TYPES.get(_nrrd_field(fields, "type", path).lower())
    if kind is None:
        raise DataFormatError(path, "type", f"unsupported {fields['type']!r}")
    try:
        sizes = [int(s) for s in _nrrd_field(fields, "sizes", path).split()]
    except ValueError:
        raise DataFormatError(path, "sizes", f"not integers: {fields['sizes']!r}") from None
    if len(sizes) != int(_nrrd_field(fields, "dimension", path)):
        raise DataFormatError(path, "sizes",
                              f"{sizes} do not match dimension {fields['dimension']}")
    endian = ">" if fields.get("endian", "little") == "big" else "<"
    encoding = _nrrd_field(fields, "encoding", path)
    if encoding in ("gzip", "gz"):
        try:
            data = gzip.decompress(raw[offset:])
        except (OSError, EOFError, zlib.error) as error:
            raise DataFormatError(path, "encoding", f"gzip data unreadable: {error}") from None
    elif encoding == "raw":
        data = raw[offset:]
    else:
        raise DataFormatError(path, "encoding", f"unsupported {encoding!r} (raw or gzip only)")
    dtype = np.dtype(endian + kind)
    expected = int(np.prod(sizes)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(path, "sizes", f"{sizes} of {fields['type']} need {expected} bytes,"
                                             f" the data holds {len(data)}")
    values = np.frombuffer(data, dtype=dtype).reshape(sizes[::-1]).astype(dtype.newbyteorder("="))
    return values, _nrrd_spacing(fields, len(sizes), path)[::-1]


def _inv3_member(archive: tarfile.TarFile, name: str, path: Path) -> bytes:
    """The bytes of the member whose file name is ``name`` (projects nest them in a folder)."""
    for member in archive.getmembers():
        if member.isfile() and PurePosixPath(member.name).name == name:
            handle = archive.extractfile(member)
            if handle is not None:
                return handle.read()
    raise DataFormatError(path, name, "no such member in the project")


def read_inv3(path: Path | str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read the image matrix of an InVesalius 3 project (``.inv3``).

    Returns:
        ``values``: ``(z, y, x)`` as stored (the matrix's dtype, native byte order);
        ``spacing_mm``: ``(z, y, x)`` voxel size in mm.
    """
    path = Path(path)
    try:
        with tarfile.open(path, "r:gz") as archive:
            try:
                main = plistlib.loads(_inv3_member(archive, "main.plist", path))
            except plistlib.InvalidFileException as error:
                raise DataFormatError(path, "main.plist", str(error)) from None
            try:
                matrix = main["matrix"]
                dtype = np.dtype(matrix["dtype"]).newbyteorder("<")
                shape = tuple(int(n) for n in matrix["shape"])
                spacing_xyz = tuple(float(s) for s in main["spacing"])
                data = _inv3_member(archive, PurePosixPath(matrix["filename"]).name, path)
            except (KeyError, TypeError) as error:
                raise DataFormatError(path, "main.plist", f"no usable {error}") from None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataFormatError(path, "archive", f"not a gzip'd tar: {error}") from None
    if len(shape) != 3 or len(spacing_xyz) != 3:
        raise DataFormatError(path, "main.plist", f"shape {shape} / spacing {spacing_xyz}"
                                                  " are not three-dimensional")
    if len(data) != int(np.prod(shape)) * dtype.itemsize:
        raise DataFormatError(path, matrix["filename"], f"{len(data)} bytes do not hold {shape}"
                                                        f" values of {dtype}")
    values = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return values, spacing_xyz[::-1]


def read_mrc(path: Path | str) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Read an MRC volume (2014 format; modes 0, 1, 2, 6, 12).

    Returns:
        ``values``: ``(nz, ny, nx)`` in native byte order; ``voxel_size``: ``(z, y, x)``
        cell size over sampling in the file's units, ``None`` when the cell is zero.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < MRC_HEADER_BYTES or raw[208:212] != b"MAP ":
        raise DataFormatError(path, "MAP", "not an MRC file (no 'MAP ' at byte 208)")
    endian = ">" if raw[212] == 0x11 else "<"
    words = np.frombuffer(raw[:MRC_HEADER_BYTES], dtype=endian + "i4")
    floats = np.frombuffer(raw[:MRC_HEADER_BYTES], dtype=endian + "f4")
    shape = tuple(int(n) for n in words[2::-1])  # (nz, ny, nx)
    if words[3] not in MRC_MODES:
        raise DataFormatError(path, "mode", f"unsupported mode {words[3]}")
    dtype = np.dtype(endian + MRC_MODES[int(words[3])])
    offset = MRC_HEADER_BYTES + int(words[23])  # nsymbt: extended header bytes
    if min(shape) < 1 or len(raw) - offset != int(np.prod(shape)) * dtype.itemsize:
        raise DataFormatError(path, "nx, ny, nz", f"{shape[::-1]} values of {dtype} do not fill"
                                                  f" the {len(raw) - offset} data bytes")
    values = np.frombuffer(raw[offset:], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    cell = floats[12:9:-1]  # (zlen, ylen, xlen)
    sampling = words[9:6:-1]  # (mz, my, mx)
    if not np.all(cell > 0) or not np.all(sampling > 0):
        return values, None
    return values, tuple(float(c / m) for c, m in zip(cell, sampling, strict=True))
