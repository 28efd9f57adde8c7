"""Write post-log projection data as DICOM-CT-PD, one file per view, atomically.

Files are named ``PD000001.dcm`` ... in view order (never from DICOM text),
written into a temporary folder renamed into place when complete. Each view
is stored as uint16 with its own RescaleSlope/RescaleIntercept (error at most
half a slope, about 1e-4 of the view's range), image Rows along the detector
channels and Columns along the detector rows, the rows in the order of the
public data (towards decreasing ``z``; see :mod:`ctpnp.io.projections`). The geometry goes into the
private tags of :mod:`ctpnp.io.ctpd_tags` as float32 (FL), exactly as
:class:`~ctpnp.scanner.acquisition.Acquisition` holds it when its values are float32
(as :meth:`Acquisition.uniform` makes them); :func:`ctpnp.io.read_projections`
reads the folder back.
"""

from __future__ import annotations

import datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ctpnp.atomic import staged_dir
from ctpnp.io.ctpd_tags import TAGS, put_private
from ctpnp.io.derived import identity_of
from ctpnp.io.quantize import fit_rescale
from ctpnp.io.scan import CT_IMAGE
from ctpnp.scanner.acquisition import Acquisition

__all__ = ["write_projections"]


def _scan_header(geometry: Acquisition, description: str, identity: Dataset | None) -> Dataset:
    """Attributes shared by every view: identity, detector, distances, scan type."""
    now = datetime.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(ds, keyword, "")
    if identity is not None:
        ds.update(identity_of(identity))
    ds.SeriesNumber = 1
    ds.SeriesDescription = description[:64]
    ds.Manufacturer = "ctpnp"
    ds.SoftwareVersions = version("ctpnp")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = geometry.n_channels, geometry.n_rows
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = {
        "NumberofDetectorRows": geometry.n_rows,
        "NumberofDetectorColumns": geometry.n_channels,
        "DetectorElementTransverseSpacing": geometry.channel_spacing_mm,
        "DetectorElementAxialSpacing": geometry.row_spacing_mm,
        "DetectorShape": geometry.detector.upper(),
        "DetectorFocalCenterRadialDistance": geometry.source_isocenter_mm,
        "ConstantRadialDistance": geometry.source_detector_mm,
        "DetectorCentralElement": [geometry.central_channel,
                                   geometry.n_rows + 1 - geometry.central_row],
        "FlyingFocalSpotMode": geometry.flying_focal_spot,
        "NumberofSourceAngularSteps": geometry.views_per_turn,
        "TypeofProjectionData": geometry.scan_type.upper(),
        "TypeofProjectionGeometry": "FANBEAM",
        "LogFlag": "YES",
        "WaterAttenuationCoefficient": geometry.mu_water_per_mm,
    }
    for keyword, value in shared.items():
        put_private(ds, TAGS[keyword], value)
    return ds


def _view_dataset(header: Dataset, geometry: Acquisition, view: np.ndarray, index: int
                  ) -> Dataset:
    """One view's file: shared header, its focal position and offsets, its pixel data."""
    ds = Dataset()
    ds.update(header)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = index + 1
    per_view = {
        "DetectorFocalCenterAngularPosition": geometry.focal_angles_rad[index],
        "DetectorFocalCenterAxialPosition": geometry.focal_z_mm[index],
        "SourceAngularPositionShift": geometry.source_angle_shift_rad[index],
        "SourceAxialPositionShift": geometry.source_z_shift_mm[index],
        "SourceRadialDistanceShift": geometry.source_radial_shift_mm[index],
    }
    if geometry.photons is not None:
        per_view["PhotonStatistics"] = geometry.photons[index]
    for keyword, value in per_view.items():
        put_private(ds, TAGS[keyword], value)
    rescale = fit_rescale(view)
    ds.RescaleSlope, ds.RescaleIntercept = rescale.slope, rescale.intercept
    ds.RescaleType = "US"
    ds.PixelData = rescale.store(view[::-1].T).tobytes()  # rows stored towards -z
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def write_projections(
    data: ArrayLike,
    geometry: Acquisition,
    out_dir: Path | str,
    *,
    description: str = "ctpnp projection data",
    identity: Dataset | None = None,
) -> list[Path]:
    """Write a scan as a DICOM-CT-PD folder; returns the files in view order.

    Args:
        data: ``(views, rows, channels)`` post-log line integrals, finite.
        geometry: the acquisition; its shape must match ``data``.
        out_dir: folder to create; it must not exist or be empty.
        description: SeriesDescription (64 characters at most are kept).
        identity: a header whose patient, study and acquisition attributes
            (:data:`ctpnp.io.derived.IDENTITY`) the scan takes, e.g. the CT series
            it was simulated from; default a new, empty study.

    Raises:
        ValueError: ``data`` of the wrong shape or not finite.
        FileExistsError: ``out_dir`` exists and is not empty.
    """
    values = np.asarray(data, dtype=np.float64)
    expected = (geometry.n_views, geometry.n_rows, geometry.n_channels)
    if values.shape != expected:
        raise ValueError(f"data has shape {values.shape}, the acquisition needs {expected} "
                         "(views, rows, channels)")
    if not np.isfinite(values).all():
        raise ValueError("data must be finite (no NaN or inf)")
    header = _scan_header(geometry, description, identity)
    width = max(6, len(str(geometry.n_views)))
    names = [f"PD{index + 1:0{width}d}.dcm" for index in range(geometry.n_views)]
    with staged_dir(out_dir) as staging:
        for index, name in enumerate(names):
            _view_dataset(header, geometry, values[index], index).save_as(
                staging / name, enforce_file_format=True)
    return [Path(out_dir) / name for name in names]
