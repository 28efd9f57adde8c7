"""Write volumes as NIfTI-1 through nibabel, in RAS millimetres.

ctpnp volumes are ``(slices, H, W)``; NIfTI tools expect the slice axis last,
so the file holds the array transposed to ``(W, H, slices)`` with the affine's
columns permuted to match. Both describe the same voxels at the same RAS
positions: reading the file with nibabel and transposing back gives the input.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike

from ctpnp.atomic import staged_file

__all__ = ["write_nifti"]


def write_nifti(
    volume: ArrayLike, affine: ArrayLike, path: Path | str, *, description: str = ""
) -> Path:
    """Write a (slices, H, W) volume with its (4, 4) RAS affine (mm) as ``.nii`` / ``.nii.gz``.

    Values are stored as float32 (HU, or any float map such as a log-likelihood).
    The sform holds the affine exactly; the qform too unless the affine is
    sheared (gantry tilt), which a qform cannot express (its code is then 0).
    ``description`` goes to the header's 80-byte ``descrip`` field (ASCII).

    Returns:
        ``path``, written atomically (temporary file, then rename).
    """
    data = np.asarray(volume, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    if data.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"need a 3D volume and a 4x4 affine, got {data.shape}, {affine.shape}")
    file_affine = affine[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(data.transpose(2, 1, 0), file_affine)
    image.header.set_xyzt_units(xyz="mm")
    image.set_sform(file_affine, code="scanner")
    linear = file_affine[:3, :3]
    gram = linear.T @ linear
    orthogonal = np.allclose(gram, np.diag(np.diag(gram)), atol=1e-6 * np.abs(gram).max())
    image.set_qform(file_affine if orthogonal else None, code="scanner" if orthogonal else 0)
    image.header["descrip"] = description.encode("ascii", "replace")[:79]
    path = Path(path)
    with staged_file(path) as temporary:
        nib.save(image, temporary)
    return path
