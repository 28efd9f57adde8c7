"""Read DICOM-CT-PD projection data: one file per view, post-log, with its acquisition geometry.

Every DICOM file of the folder (recursive; DICOMDIR skipped) must be a view of
one scan. Views are ordered by InstanceNumber, the acquisition order. The
stored image holds a view with its Rows along the detector *channels* and its
Columns along the detector *rows*, as in the public data sets; values are
``stored * RescaleSlope + RescaleIntercept``. See :mod:`ctpnp.scanner.acquisition` for
the coordinate conventions and ``docs/dicom-ct-pd-conventions.md`` for the
evidence behind them.

Decisions on the format's ambiguities:

* Detector rows are stored running towards *decreasing* focal-centre axial
  position ``z0`` (the public readers helix2fan, ODL's Mayo reader and FreeCT
  all reverse them). The reader reverses them, so that in
  :class:`ProjectionData` rows run towards ``+z``, and the central row becomes
  ``rows + 1 - central_row``; :func:`ctpnp.io.write_projections` undoes both.
* Channels keep their stored order; ``phi`` is the focal centre's angle as
  stored (see :mod:`ctpnp.scanner.acquisition`); ``phi`` may increase or
  decrease from view to view.
* Decimal values may be FL or DS (:mod:`ctpnp.io.ctpd_tags`);
  :attr:`ProjectionData.value_types` says which was found.

* (7033,100B) is the angular and (7033,100C) the axial flying-focal-spot
  shift. A file in FFSZ mode with a non-zero 100B and a zero 100C follows the
  older dictionary that swapped the two names, and is read swapped.
* WaterAttenuationCoefficient is per mm; a value in (0.1, 1) can only be per
  cm for water at CT energies and is divided by 10. Older files keep it in
  (0018,0061).
* Only post-log data (LogFlag YES) and fan-beam geometry are read.

Any problem raises a :class:`~ctpnp.io.DicomInputError` naming the file and the tag.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ctpnp.io.ctpd_tags import (
    TAGS,
    PrivateTag,
    read_private_numbers,
    read_private_text,
    value_type,
)
from ctpnp.io.errors import (
    DicomInputError,
    MissingTagError,
    PixelDataError,
    UnreadableFileError,
)
from ctpnp.io.headers import checked_rescale, field_name, optional_text, read_int
from ctpnp.io.pixels import decode_frames
from ctpnp.io.scan import MEDIA_DIRECTORY, is_dicom_file, list_files, read_dataset
from ctpnp.scanner.acquisition import Acquisition, AcquisitionFieldError

__all__ = ["ProjectionData", "ProjectionGeometryError", "read_projections"]


class ProjectionGeometryError(DicomInputError):
    """Views that do not form one scan: mixed scans, inconsistent or non-monotone geometry."""


@dataclass(frozen=True, eq=False)
class ProjectionData:
    """A DICOM-CT-PD scan as read.

    Attributes:
        data: ``(views, rows, channels)`` float32 post-log line integrals.
        geometry: the :class:`~ctpnp.scanner.acquisition.Acquisition`.
        datasets: each view's header (pixel data removed), in view order.
        paths: each view's file, in view order.
        value_types: how the first view stores each numeric private tag it
            has (tag name → ``"FL"``, ``"DS"``, ``"US"``).
    """

    data: np.ndarray
    geometry: Acquisition
    datasets: list[Dataset]
    paths: list[Path]
    value_types: dict[str, str]


@dataclass(frozen=True)
class _View:
    """What one file contributes; ``shared`` must agree across the scan."""

    path: Path
    instance: int
    shared: dict[str, object]
    per_view: dict[str, float]
    photons: np.ndarray | None
    data: np.ndarray
    header: Dataset


_FIELD_TAGS = {
    "n_rows": "NumberofDetectorRows",
    "n_channels": "NumberofDetectorColumns",
    "channel_spacing_mm": "DetectorElementTransverseSpacing",
    "row_spacing_mm": "DetectorElementAxialSpacing",
    "detector": "DetectorShape",
    "source_isocenter_mm": "DetectorFocalCenterRadialDistance",
    "source_detector_mm": "ConstantRadialDistance",
    "central_channel": "DetectorCentralElement",
    "central_row": "DetectorCentralElement",
    "views_per_turn": "NumberofSourceAngularSteps",
    "scan_type": "TypeofProjectionData",
    "mu_water_per_mm": "WaterAttenuationCoefficient",
    "flying_focal_spot": "FlyingFocalSpotMode",
    "focal_angles_rad": "DetectorFocalCenterAngularPosition",
    "focal_z_mm": "DetectorFocalCenterAxialPosition",
    "source_angle_shift_rad": "SourceAngularPositionShift",
    "source_z_shift_mm": "SourceAxialPositionShift",
    "source_radial_shift_mm": "SourceRadialDistanceShift",
    "photons": "PhotonStatistics",
}
"""The tag each :class:`Acquisition` field is read from (to name it in errors)."""


def read_projections(folder: Path | str) -> ProjectionData:
    """Read every view of the DICOM-CT-PD scan in ``folder`` (recursive).

    Returns:
        :class:`ProjectionData` with ``.data`` ``(views, rows, channels)``
        float32 post-log line integrals and ``.geometry``.

    Raises:
        DicomInputError: (a subclass of) for an empty folder, unreadable files,
            missing or bad tags, bad pixel data, or views of different scans.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomInputError("is not a folder", path=folder)
    views = []
    for path in list_files(folder):
        if not is_dicom_file(path):
            continue
        ds = read_dataset(path, pixels=True)
        if MEDIA_DIRECTORY == optional_text(ds, "SOPClassUID") or "DirectoryRecordSequence" in ds:
            continue
        if not optional_text(ds, "SOPClassUID") and not optional_text(ds, "Modality"):
            raise UnreadableFileError("no SOPClassUID (0008,0016) or Modality (0008,0060): "
                                      "truncated or not a DICOM object", path=path)
        try:
            views.append(_read_view(ds, path))
        except DicomInputError:
            raise
        except Exception as exc:  # lazy decoding of a damaged header inside pydicom
            raise DicomInputError(f"header cannot be interpreted ({type(exc).__name__}: {exc})",
                                  path=path) from exc
    if not views:
        raise DicomInputError("holds no DICOM-CT-PD projection files", path=folder)
    views.sort(key=lambda view: view.instance)
    _check_one_scan(views)
    geometry = _acquisition(views)
    first = views[0].header
    types = {tag.field: value_type(first, tag) for tag in TAGS.values()
             if tag.vr not in ("CS",)}
    return ProjectionData(
        data=np.stack([view.data for view in views]),
        geometry=geometry,
        datasets=[view.header for view in views],
        paths=[view.path for view in views],
        value_types={field: found for field, found in types.items() if found is not None},
    )


def _numbers(ds: Dataset, keyword: str, path: Path, count: int | None = 1,
             required: bool = True) -> np.ndarray | None:
    return read_private_numbers(ds, TAGS[keyword], path, count, required=required)


def _positive(ds: Dataset, keyword: str, path: Path) -> float:
    (value,) = _numbers(ds, keyword, path)
    if value <= 0:
        raise MissingTagError(f"must be positive, got {value}", path=path,
                              field=TAGS[keyword].field)
    return float(value)


def _count(ds: Dataset, keyword: str, path: Path) -> int:
    (value,) = _numbers(ds, keyword, path)
    if value < 1 or value != int(value):
        raise MissingTagError(f"must be a positive integer, got {value}", path=path,
                              field=TAGS[keyword].field)
    return int(value)


def _mu_water_per_mm(ds: Dataset, path: Path) -> float:
    tag = TAGS["WaterAttenuationCoefficient"]
    value = read_private_numbers(ds, tag, path, required=False)
    if value is None:
        tag = TAGS["WaterAttenuationCoefficient (older files)"]
        value = read_private_numbers(ds, tag, path)
    mu = float(value[0])
    if 0.1 < mu < 1.0:
        mu /= 10.0
    if not 0.001 < mu <= 0.1:
        raise MissingTagError(f"{value[0]} is not an attenuation of water in 1/mm or 1/cm",
                              path=path, field=tag.field)
    return mu


def _shared(ds: Dataset, path: Path) -> dict[str, object]:
    """Header values that every view of one scan must share."""
    central = _numbers(ds, "DetectorCentralElement", path, count=2)
    shape = read_private_text(ds, TAGS["DetectorShape"], path, ("CYLINDRICAL", "FLAT"))
    read_private_text(ds, TAGS["TypeofProjectionGeometry"], path, ("FANBEAM",), "FANBEAM")
    read_private_text(ds, TAGS["LogFlag"], path, ("YES",), "YES")
    return {
        "series": optional_text(ds, "SeriesInstanceUID"),
        "scan_type": read_private_text(ds, TAGS["TypeofProjectionData"], path,
                                       ("AXIAL", "HELICAL")).lower(),
        "n_rows": _count(ds, "NumberofDetectorRows", path),
        "n_channels": _count(ds, "NumberofDetectorColumns", path),
        "channel_spacing_mm": _positive(ds, "DetectorElementTransverseSpacing", path),
        "row_spacing_mm": _positive(ds, "DetectorElementAxialSpacing", path),
        "detector": shape.lower(),
        "source_isocenter_mm": _positive(ds, "DetectorFocalCenterRadialDistance", path),
        "source_detector_mm": _positive(ds, "ConstantRadialDistance", path),
        "central_channel": float(central[0]),
        "central_row": float(_count(ds, "NumberofDetectorRows", path) + 1 - central[1]),
        "views_per_turn": _count(ds, "NumberofSourceAngularSteps", path),
        "mu_water_per_mm": _mu_water_per_mm(ds, path),
        "flying_focal_spot": read_private_text(
            ds, TAGS["FlyingFocalSpotMode"], path, ("FFSNONE", "FFSZ", "FFSXY", "FFSXYZ"),
            "FFSNONE"),
    }


def _per_view(ds: Dataset, path: Path, mode: str) -> dict[str, float]:
    """This view's focal centre and flying-focal-spot offsets (0 when absent)."""
    def optional(keyword: str) -> float:
        value = _numbers(ds, keyword, path, required=False)
        return 0.0 if value is None else float(value[0])

    angle_shift, z_shift = optional("SourceAngularPositionShift"), optional(
        "SourceAxialPositionShift")
    if mode == "FFSZ" and angle_shift != 0 and z_shift == 0:  # older, swapped dictionary
        angle_shift, z_shift = z_shift, angle_shift
    return {
        "focal_angles_rad": float(_numbers(ds, "DetectorFocalCenterAngularPosition", path)[0]),
        "focal_z_mm": float(_numbers(ds, "DetectorFocalCenterAxialPosition", path)[0]),
        "source_angle_shift_rad": angle_shift,
        "source_z_shift_mm": z_shift,
        "source_radial_shift_mm": optional("SourceRadialDistanceShift"),
    }


def _read_view(ds: Dataset, path: Path) -> _View:
    shared = _shared(ds, path)
    channels, rows = shared["n_channels"], shared["n_rows"]
    for keyword, expected in (("Rows", channels), ("Columns", rows)):
        if read_int(ds, keyword, path) != expected:
            raise MissingTagError(
                f"is {ds.get(keyword)}, expected {expected} (image rows are detector channels, "
                "columns detector rows)", path=path, field=field_name(keyword))
    photons = _numbers(ds, "PhotonStatistics", path, count=None, required=False)
    if photons is not None and photons.size not in (1, channels):
        raise MissingTagError(f"has {photons.size} values, expected 1 or {channels}",
                              path=path, field=TAGS["PhotonStatistics"].field)
    slope, intercept = checked_rescale(ds, path)
    stored = decode_frames(ds, path)
    if stored.shape[0] != 1:
        raise PixelDataError(f"holds {stored.shape[0]} frames, expected 1 view per file",
                             path=path, field="NumberOfFrames (0028,0008)")
    values = stored[0].T[::-1].astype(np.float64) * slope + intercept  # rows towards +z
    if not np.isfinite(values).all():
        raise PixelDataError("rescales to non-finite values", path=path,
                             field=field_name("RescaleSlope"))
    del ds.PixelData
    return _View(
        path=path,
        instance=read_int(ds, "InstanceNumber", path, minimum=0),
        shared=shared,
        per_view=_per_view(ds, path, shared["flying_focal_spot"]),
        photons=None if photons is None else np.broadcast_to(photons, (channels,)),
        data=values.astype(np.float32),
        header=ds,
    )


def _tag_of(name: str) -> PrivateTag | None:
    keyword = _FIELD_TAGS.get(name)
    return None if keyword is None else TAGS[keyword]


def _check_one_scan(views: list[_View]) -> None:
    """Shared values agree, instance numbers are unique, photon statistics all or none."""
    first = views[0]
    for previous, view in itertools.pairwise(views):
        if view.instance == previous.instance:
            raise ProjectionGeometryError(
                f"repeats instance {view.instance} of {previous.path.name}: two views claim "
                "the same place in the scan", path=view.path, field=field_name("InstanceNumber"))
    for view in views[1:]:
        for name, value in view.shared.items():
            if value != first.shared[name]:
                tag = _tag_of(name)
                raise ProjectionGeometryError(
                    f"is {value!r}, but {first.path.name} has {first.shared[name]!r}: views of "
                    "different scans (or inconsistent headers) in one folder",
                    path=view.path,
                    field=tag.field if tag else field_name("SeriesInstanceUID"))
        if (view.photons is None) != (first.photons is None):
            lacking = view if view.photons is None else first
            raise ProjectionGeometryError(
                f"is present in only some views (not in {lacking.path.name})",
                path=view.path, field=TAGS["PhotonStatistics"].field)


def _acquisition(views: list[_View]) -> Acquisition:
    """The scan's geometry; angles unwrapped; steps and positions checked per view."""
    per_view = {name: np.array([view.per_view[name] for view in views])
                for name in views[0].per_view}
    per_view["focal_angles_rad"] = np.unwrap(per_view["focal_angles_rad"])
    _check_monotone(views, per_view["focal_angles_rad"], "DetectorFocalCenterAngularPosition",
                    strict=True)
    shared = {k: v for k, v in views[0].shared.items() if k != "series"}
    if shared["scan_type"] == "helical":
        _check_monotone(views, per_view["focal_z_mm"], "DetectorFocalCenterAxialPosition",
                        strict=False)
    photons = None if views[0].photons is None else np.stack([v.photons for v in views])
    try:
        return Acquisition(**shared, **per_view, photons=photons)
    except AcquisitionFieldError as error:
        tag = _tag_of(error.field)
        raise ProjectionGeometryError(str(error), path=views[0].path,
                                      field=tag.field if tag else None) from error


def _check_monotone(views: list[_View], values: np.ndarray, keyword: str, *,
                    strict: bool) -> None:
    """Consecutive steps keep one sign (non-zero when ``strict``); names the first bad view."""
    steps = np.diff(values)
    if steps.size == 0:
        return
    sign = np.sign(steps[np.argmax(np.abs(steps))])
    bad = (np.sign(steps) != sign) & ((steps != 0) | strict)
    if sign == 0 or bad.any():
        index = int(np.argmax(bad)) + 1 if bad.any() else 1
        raise ProjectionGeometryError(
            f"steps from {values[index - 1]:.6g} to {values[index]:.6g} against the scan's "
            "direction (views ordered by InstanceNumber)",
            path=views[index].path, field=TAGS[keyword].field)

