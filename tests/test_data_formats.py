"""The NRRD, InVesalius 3 and MRC readers of ctpnp.data, on small files written here."""

from __future__ import annotations

import gzip
import io
import plistlib
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ctpnp.data.errors import DataFormatError
from ctpnp.data.formats import read_inv3, read_mrc, read_nrrd


def write_nrrd(path: Path, values_xyz: np.ndarray, spacing_xyz: tuple[float, ...], *,
               encoding: str = "gzip", dtype: str = "<i2") -> None:
    """An NRRD file of ``values_xyz`` (axes x, y, z as in the header: x fastest on disk)."""
    kinds = {"i2": "short", "f4": "float"}
    directions = " ".join(
        "(" + ",".join(str(s if i == j else 0) for j in range(3)) + ")"
        for i, s in enumerate(spacing_xyz))
    header = (f"NRRD0004\n# written by a test\ntype: {kinds[dtype[1:]]}\ndimension: 3\n"
              f"space: left-posterior-superior\nsizes: {' '.join(map(str, values_xyz.shape))}\n"
              f"space directions: {directions}\nkinds: domain domain domain\n"
              f"endian: {'big' if dtype[0] == '>' else 'little'}\nencoding: {encoding}\n"
              "space origin: (0,0,0)\n\n")
    data = values_xyz.astype(dtype).tobytes(order="F")
    path.write_bytes(header.encode() + (gzip.compress(data) if encoding == "gzip" else data))


def write_inv3(path: Path, values_zyx: np.ndarray, spacing_xyz: tuple[float, float, float],
               *, matrix_bytes: bytes | None = None) -> None:
    """An InVesalius 3 project: a gzip'd tar of ``tmpXYZ/main.plist`` and ``tmpXYZ/matrix.dat``."""
    plist = {"modality": "CT", "name": "test", "spacing": list(spacing_xyz),
             "matrix": {"dtype": "int16", "filename": "matrix.dat",
                        "shape": list(values_zyx.shape)}}
    members = {"tmpXYZ/main.plist": plistlib.dumps(plist),
               "tmpXYZ/matrix.dat": matrix_bytes if matrix_bytes is not None
               else values_zyx.astype("<i2").tobytes()}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def write_mrc(path: Path, values: np.ndarray, cell_xyz: tuple[float, float, float] = (0, 0, 0),
              extended: bytes = b"") -> None:
    """An MRC 2014 file of float32 ``values`` (nz, ny, nx), little endian."""
    nz, ny, nx = values.shape
    words = np.zeros(256, dtype="<i4")
    words[:4] = (nx, ny, nz, 2)
    words[7:10] = (nx, ny, nz)
    words[16:19] = (1, 2, 3)
    words[23] = len(extended)
    header = bytearray(words.tobytes())
    header[40:52] = np.asarray(cell_xyz, dtype="<f4").tobytes()
    header[208:212] = b"MAP "
    header[212:214] = b"\x44\x44"
    path.write_bytes(bytes(header) + extended + values.astype("<f4").tobytes())


RNG = np.random.default_rng(7)
VOLUME_XYZ = RNG.integers(-1024, 3000, size=(5, 4, 3)).astype(np.int16)


@pytest.mark.parametrize("encoding, dtype", [("gzip", "<i2"), ("raw", ">f4")])
def test_nrrd_reads_back_exactly(tmp_path: Path, encoding: str, dtype: str) -> None:
    path = tmp_path / "v.nrrd"
    write_nrrd(path, VOLUME_XYZ, (0.5, 0.75, 5.0), encoding=encoding, dtype=dtype)
    values, spacing = read_nrrd(path)
    assert values.shape == (3, 4, 5)  # (z, y, x)
    np.testing.assert_array_equal(values, VOLUME_XYZ.transpose(2, 1, 0))
    assert values.dtype == np.dtype(dtype).newbyteorder("=")
    assert spacing == pytest.approx((5.0, 0.75, 0.5))
    # the documented orientation: an axial slice of the NRRD array is a[:, :, k].T
    np.testing.assert_array_equal(values[1], VOLUME_XYZ[:, :, 1].T)


def test_nrrd_with_short_data_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "short.nrrd"
    write_nrrd(path, VOLUME_XYZ, (1.0, 1.0, 1.0), encoding="raw")
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataFormatError, match=r"short\.nrrd: sizes: .*need 120 bytes"):
        read_nrrd(path)


def test_inv3_reads_back_exactly(tmp_path: Path) -> None:
    values = VOLUME_XYZ.transpose(2, 1, 0).copy()
    path = tmp_path / "head.inv3"
    write_inv3(path, values, (0.9, 0.9, 1.5))
    read, spacing = read_inv3(path)
    np.testing.assert_array_equal(read, values)
    assert read.dtype == np.int16
    assert spacing == pytest.approx((1.5, 0.9, 0.9))


def test_inv3_with_a_short_matrix_names_the_member(tmp_path: Path) -> None:
    path = tmp_path / "head.inv3"
    write_inv3(path, VOLUME_XYZ, (1.0, 1.0, 1.0), matrix_bytes=b"\0" * 10)
    with pytest.raises(DataFormatError, match=r"head\.inv3: matrix\.dat: 10 bytes"):
        read_inv3(path)


def test_mrc_reads_back_exactly(tmp_path: Path) -> None:
    values = RNG.normal(0, 300, size=(3, 4, 5)).astype(np.float32)
    path = tmp_path / "v.mrc"
    write_mrc(path, values, extended=b"x" * 16)
    read, voxel = read_mrc(path)
    np.testing.assert_array_equal(read, values)
    assert voxel is None  # a zero cell: no voxel size stored
    write_mrc(path, values, cell_xyz=(5.0, 8.0, 6.0))
    assert read_mrc(path)[1] == pytest.approx((2.0, 2.0, 1.0))  # (z, y, x) = cell / n


def test_mrc_without_its_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.mrc"
    write_mrc(path, np.zeros((2, 2, 2), dtype=np.float32))
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"NOPE"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"v\.mrc: MAP"):
        read_mrc(path)
