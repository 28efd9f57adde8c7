"""DICOM and NIfTI input and output.

Reading: :func:`read_ct_series` turns a folder of CT images into a HU volume
with its RAS affine; :func:`list_ct_series` lists the series of a folder.
Writing: :func:`write_ct_series` (derived CT series), :func:`write_map_series`
(a float map as a CT-like series that viewers overlay on its source) and
:func:`write_nifti`; :func:`axial_affine` gives the geometry of a standard
axial stack; :func:`identity_of` the patient and study a derived series
joins. Projection data (DICOM-CT-PD): :func:`read_projections` and
:func:`write_projections`; a scan folder to reconstruct (DICOM-CT-PD or the
slice folders ``ctpnp simulate`` writes) with its image grid: :func:`read_scan`,
:func:`acquisition_grid`, :func:`reference_grid`. pydicom's own CT slices:
:func:`read_pydicom_slice`. Bad input raises a :class:`DicomInputError`.

pydicom and nibabel are used only inside this package.
"""

from ctpnp.io.affine import axial_affine
from ctpnp.io.derived import identity_of, write_ct_series, write_map_series
from ctpnp.io.errors import (
    DicomInputError,
    MissingCodecError,
    MissingTagError,
    NoCTSeriesError,
    PixelDataError,
    SeriesChoiceError,
    SliceGeometryError,
    UnreadableFileError,
)
from ctpnp.io.examples import read_pydicom_slice
from ctpnp.io.nifti import write_nifti
from ctpnp.io.nifti_read import read_nifti
from ctpnp.io.projections import ProjectionData, ProjectionGeometryError, read_projections
from ctpnp.io.projections_write import write_projections
from ctpnp.io.scan_input import Grid, Scan, acquisition_grid, read_scan, reference_grid
from ctpnp.io.series import CTSeries, SeriesSummary, list_ct_series, read_ct_series, slice_z_mm

__all__ = [
    "CTSeries",
    "DicomInputError",
    "Grid",
    "MissingCodecError",
    "MissingTagError",
    "NoCTSeriesError",
    "PixelDataError",
    "ProjectionData",
    "ProjectionGeometryError",
    "Scan",
    "SeriesChoiceError",
    "SeriesSummary",
    "SliceGeometryError",
    "UnreadableFileError",
    "acquisition_grid",
    "axial_affine",
    "identity_of",
    "list_ct_series",
    "read_ct_series",
    "read_nifti",
    "read_projections",
    "read_pydicom_slice",
    "read_scan",
    "reference_grid",
    "slice_z_mm",
    "write_ct_series",
    "write_map_series",
    "write_nifti",
    "write_projections",
]
