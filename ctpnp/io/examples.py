"""CT slices shipped with pydicom, read as CT series: the demo's, the study's and the
validation set's real images (no download)."""

from __future__ import annotations

import shutil
import tempfile

import pydicom.data

from ctpnp.io.series import CTSeries, read_ct_series

__all__ = ["read_pydicom_slice"]


def read_pydicom_slice(name: str = "CT_small.dcm") -> CTSeries:
    """The CT file ``name`` among pydicom's test files (default: its example CT slice),
    read by :func:`read_ct_series` from a folder holding only it.

    Raises ``ValueError`` when pydicom has no such file.
    """
    path = pydicom.data.get_testdata_file(name)
    if path is None:
        raise ValueError(f"pydicom ships no test file {name!r}")
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(path, folder)
        return read_ct_series(folder)
