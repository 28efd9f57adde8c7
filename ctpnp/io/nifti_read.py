"""Read back a NIfTI volume written by :func:`ctpnp.io.write_nifti`."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ctpnp.io.errors import DicomInputError

__all__ = ["read_nifti"]


def read_nifti(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """A ``.nii``/``.nii.gz`` volume as ``(slices, H, W)`` float32 and its (4, 4) RAS affine.

    The inverse of :func:`ctpnp.io.write_nifti`: the file's ``(j, i, k)`` axes
    become ``(k, i, j)`` and the sform (or qform) its affine, in mm.

    Raises:
        DicomInputError: the file is unreadable or not a 3D volume.
    """
    path = Path(path)
    try:
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise DicomInputError(f"cannot be read as NIfTI ({type(exc).__name__}: {exc})",
                              path=path) from exc
    if data.ndim != 3:
        raise DicomInputError(f"holds a {data.ndim}D image, expected a 3D volume", path=path)
    return data.transpose(2, 1, 0).copy(), image.affine[:, [2, 1, 0, 3]]
