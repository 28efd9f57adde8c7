"""Write volumes as derived CT Image Storage series that viewers and PACS accept.

One file per slice, named ``IM00001.dcm`` ... (never from DICOM text), written
into a temporary folder renamed into place when complete. Each series gets new
Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY\\AXIAL``, a
DerivationDescription, values stored as uint16 with RescaleSlope/Intercept,
and the plane geometry of its affine. Patient, study and acquisition
attributes (:data:`IDENTITY`) are copied from ``identity`` (e.g. the header of
the raw data a volume was reconstructed from) or else from ``like`` (a
:class:`CTSeries` read before), so the output joins the source's study; the
frame of reference comes only from ``like``, with whose images the output
then lines up in a viewer. ``sources`` names, per slice, the instances it was
derived from (SourceImageSequence).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ctpnp.atomic import staged_dir
from ctpnp.io.affine import PlaneGeometry, planes_from_affine
from ctpnp.io.quantize import Rescale, decimal_string, fit_rescale
from ctpnp.io.scan import CT_IMAGE
from ctpnp.io.series import CTSeries

__all__ = ["ACQUISITION", "IDENTITY", "identity_of", "write_ct_series", "write_map_series"]

IDENTIFYING = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
    "AcquisitionDate", "AcquisitionTime",
)
"""Patient and study attributes that identify the patient (left out when anonymizing)."""

ACQUISITION = ("PatientPosition", "BodyPartExamined", "Laterality", "KVP")
"""Acquisition attributes copied from the source whether anonymized or not."""

IDENTITY = IDENTIFYING + ACQUISITION
"""Everything :func:`write_ct_series` copies from its ``identity`` header."""

_FRAME = ("FrameOfReferenceUID", "PositionReferenceIndicator")
"""Copied from ``like`` only: the raw data's frame is not the image grid's."""

_EMPTY_TYPE_2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator",
    "KVP", "AcquisitionNumber", "PatientPosition",
)
"""Type 2 attributes of the CT Image IOD: present, empty when unknown. ``Laterality``
(Type 2C: only for a paired body part) is never made up: it is copied when the source
has it (:data:`IDENTITY`), left out when the source names an (unpaired) body part, and
empty (unknown) when nothing says which body part was scanned."""


def _geometry_mm(value: float) -> str:
    """A position or spacing as DS, rounded to 1e-6 mm so float noise never reaches the file."""
    return decimal_string(round(float(value), 6) + 0.0)


def _cosine(value: float) -> str:
    return decimal_string(round(float(value), 10) + 0.0)


def _header(
    like: CTSeries | None, identity: Dataset | None, description: str, derivation: str,
    series_number: int, frame: Dataset | None = None,
) -> Dataset:
    """The attributes shared by every slice of the new series; the frame of reference is
    ``frame``'s, else ``like``'s, else new."""
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in _EMPTY_TYPE_2:
        setattr(ds, keyword, "")
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    if frame is None:
        frame = like.datasets[0] if like is not None else Dataset()
    if identity is None:
        identity = frame
    for keywords, source in ((IDENTITY, identity), (_FRAME, frame)):
        for keyword in keywords:
            value = _copied(source, keyword)
            if value is not None:
                setattr(ds, keyword, value)
    if "BodyPartExamined" not in ds and "Laterality" not in ds:
        ds.Laterality = ""  # Type 2C, its condition unknowable: empty means "unknown"
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description[:64]
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Manufacturer = "ctpnp"
    ds.SoftwareVersions = version("ctpnp")
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = (derivation or description)[:1024]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _copied(source: Dataset, keyword: str) -> object | None:
    """``keyword``'s value in ``source`` (names as text; empty values too), ``None`` when
    absent or unreadable."""
    try:
        value = source.get(keyword)
    except Exception:  # a damaged source value is not copied
        return None
    if value is None:
        return None
    return str(value) if keyword.endswith("Name") else value


def identity_of(*headers: Dataset, anonymize: bool = False) -> Dataset:
    """The :data:`IDENTITY` attributes of ``headers``, a later header's non-empty values
    overriding an earlier one's (e.g. the raw data's, then a reference series'); only the
    :data:`ACQUISITION` ones when ``anonymize``, with a new random PatientID
    (``ANON-`` and 12 hex digits: archives index by it). For ``identity=`` of
    :func:`write_ct_series`."""
    identity = Dataset()
    if anonymize:
        identity.PatientID = f"ANON-{uuid.uuid4().hex[:12].upper()}"
    for header in headers:
        for keyword in ACQUISITION if anonymize else IDENTITY:
            value = _copied(header, keyword)
            if value is not None and value != "":
                setattr(identity, keyword, value)
    return identity


def _source_references(like: CTSeries | None, n_slices: int,
                       sources: Sequence[Sequence[tuple[str, str]]] | None
                       ) -> list[DicomSequence | None]:
    """Per slice, the SourceImageSequence naming what it was derived from: ``sources``
    when given, else the ``like`` slice at its place."""
    if sources is None:
        if like is None or len(like.datasets) != n_slices:
            return [None] * n_slices
        sources = [[(str(ds.SOPClassUID), str(ds.SOPInstanceUID))] for ds in like.datasets]
    if len(sources) != n_slices:
        raise ValueError(f"sources names {len(sources)} slices, the volume has {n_slices}")
    sequences = []
    for references in sources:
        items = []
        for class_uid, instance_uid in references:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = class_uid, instance_uid
            items.append(item)
        sequences.append(DicomSequence(items) if items else None)
    return sequences


def _write(
    values: np.ndarray,
    out_dir: Path | str,
    like: CTSeries | None,
    affine: ArrayLike | None,
    header: Dataset,
    rescale: Rescale,
    window: tuple[float, float],
    sources: Sequence[Sequence[tuple[str, str]]] | None = None,
) -> list[Path]:
    """Write ``values`` (slices, H, W) as one file per slice; returns the final paths."""
    if values.ndim != 3:
        raise ValueError(f"volume must be (slices, H, W), got shape {values.shape}")
    if affine is None:
        if like is None:
            raise ValueError("give affine= (e.g. ctpnp.io.axial_affine) or like= for geometry")
        if values.shape != like.hu.shape:
            raise ValueError(f"volume shape {values.shape} differs from like's {like.hu.shape}")
        affine, thickness, slices_of = like.affine, like.slice_thickness_mm, like
    else:
        thickness, slices_of = None, None
    references = _source_references(slices_of, len(values), sources)
    planes = planes_from_affine(affine, len(values))
    _set_image(header, values.shape, planes, thickness, rescale, window)
    out_dir = Path(out_dir)
    names = [f"IM{k + 1:05d}.dcm" for k in range(len(values))]
    with staged_dir(out_dir) as staging:
        for k, name in enumerate(names):
            ds = Dataset(header)  # shares the unchanged elements, adds per-slice ones
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_geometry_mm(v) for v in planes.positions_mm[k]]
            ds.SliceLocation = _geometry_mm(planes.positions_mm[k] @ planes.normal)
            if references[k] is not None:
                ds.SourceImageSequence = references[k]
            ds.PixelData = rescale.store(values[k]).tobytes()
            ds.file_meta = _file_meta(ds)
            ds.save_as(staging / name, enforce_file_format=True)
    return [out_dir / name for name in names]


def _set_image(
    ds: Dataset,
    shape: Sequence[int],
    planes: PlaneGeometry,
    thickness_mm: float | None,
    rescale: Rescale,
    window: tuple[float, float],
) -> None:
    """Matrix, plane geometry, rescale and window, shared by all slices."""
    ds.Rows, ds.Columns = int(shape[1]), int(shape[2])
    ds.PixelSpacing = [_geometry_mm(v) for v in planes.pixel_spacing_mm]
    ds.ImageOrientationPatient = [_cosine(v) for v in (*planes.row_cosine, *planes.col_cosine)]
    ds.SliceThickness = _geometry_mm(thickness_mm or planes.slice_spacing_mm)
    ds.RescaleSlope, ds.RescaleIntercept = rescale.slope, rescale.intercept
    ds.WindowCenter, ds.WindowWidth = decimal_string(window[0]), decimal_string(window[1])


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def write_ct_series(
    hu: ArrayLike,
    out_dir: Path | str,
    like: CTSeries | None = None,
    description: str = "ctpnp reconstruction",
    *,
    derivation: str = "",
    affine: ArrayLike | None = None,
    window: tuple[float, float] = (40.0, 400.0),
    series_number: int = 1001,
    identity: Dataset | None = None,
    sources: Sequence[Sequence[tuple[str, str]]] | None = None,
) -> list[Path]:
    """Write a HU volume as a derived CT series; returns the files, in slice order.

    Args:
        hu: (slices, H, W) Hounsfield units, finite. Stored with slope 1 (error
            at most 0.5 HU) unless the range exceeds 65535 HU.
        out_dir: folder to create; it must not exist or be empty.
        like: the series the volume was derived from or lies on: its frame of
            reference is copied, its patient and study unless ``identity`` is
            given, and, without ``affine``, its geometry (then ``hu`` must have
            its shape).
        description: SeriesDescription (64 characters at most are kept).
        derivation: DerivationDescription naming method and key parameters,
            e.g. ``"ctpnp pnp-admm; prior=drunet-prox; dose=25%; iters=50"``.
        affine: (4, 4) RAS voxel-to-mm affine of ``hu``; see :mod:`ctpnp.io.affine`.
        window: (centre, width) in HU for display.
        series_number: SeriesNumber.
        identity: the header whose :data:`IDENTITY` attributes are copied (e.g.
            the raw data's, or one holding only :data:`ACQUISITION` to anonymize).
        sources: per slice, ``(SOPClassUID, SOPInstanceUID)`` pairs of the
            instances it was derived from; default ``like``'s slice when its
            geometry is used.

    Raises:
        ValueError: bad shape, no geometry, non-finite values, or ``sources``
            for another number of slices.
        FileExistsError: ``out_dir`` exists and is not empty.
    """
    values = np.asarray(hu)
    header = _header(like, identity, description, derivation, series_number)
    header.RescaleType = "HU"
    return _write(values, out_dir, like, affine, header, fit_rescale(values, step=1.0), window,
                  sources)


def write_map_series(
    values: ArrayLike,
    out_dir: Path | str,
    like: CTSeries | None = None,
    description: str = "ctpnp prior log-likelihood",
    *,
    derivation: str = "",
    affine: ArrayLike | None = None,
    series_number: int = 1002,
    identity: Dataset | None = None,
    sources: Sequence[Sequence[tuple[str, str]]] | None = None,
    overlay_on: Sequence[Dataset | Path] | None = None,
) -> list[Path]:
    """Write a float map (e.g. the prior log-likelihood) as a derived series to overlay.

    The map shares the frame of reference and geometry of ``like`` (or
    ``affine``), so viewers can fuse it with the source images. Values are
    spread over 16 bits with a fitted RescaleSlope (error at most half a slope)
    and RescaleType ``US`` (unspecified units); the window spans the 1st to
    99th percentile with VOILUTFunction ``LINEAR_EXACT``. Arguments and errors
    as :func:`write_ct_series`, and:

    Args:
        overlay_on: one header (or file) per slice of the series the map belongs on
            (e.g. the files :func:`write_ct_series` just returned): the
            map joins its patient, study and frame of reference (unless
            ``identity`` is given), and each map slice names its slice as
            source (unless ``sources`` is given).
    """
    values = np.asarray(values)
    if overlay_on is not None:
        overlay_on = [ds if isinstance(ds, Dataset) else dcmread(ds, stop_before_pixels=True)
                      for ds in overlay_on]
        if len(overlay_on) != len(values):
            raise ValueError(f"overlay_on has {len(overlay_on)} slices, the map {len(values)}")
        identity = overlay_on[0] if identity is None else identity
        sources = sources or [[(str(ds.SOPClassUID), str(ds.SOPInstanceUID))]
                              for ds in overlay_on]
    header = _header(like, identity, description, derivation, series_number,
                     frame=None if overlay_on is None else overlay_on[0])
    header.RescaleType = "US"
    header.VOILUTFunction = "LINEAR_EXACT"  # the window may be narrower than 1 unit
    rescale = fit_rescale(values)
    low, high = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    window = (float(low + high) / 2, max(float(high - low), float(rescale.slope)))
    return _write(values, out_dir, like, affine, header, rescale, window, sources)
