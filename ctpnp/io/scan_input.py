"""A scan folder as fan sinograms of slices, and the image grid to put them on.

Two input layouts are accepted:

* one DICOM-CT-PD scan (a folder, searched recursively): an axial scan gives
  one slice (the central detector row); a helical scan is rebinned to fan
  sinograms (:func:`ctpnp.scanner.rebinning.rebin_helical`) at slices spaced by the
  detector row width at the isocentre over the covered range, or at the slice
  positions of a reference series;
* the layout ``ctpnp simulate`` writes: sub-folders ``slice_0001/``,
  ``slice_0002/``, … each one axial scan of one slice, all with one detector.

DICOM-CT-PD describes the scanner, not an image grid. The grid is either
derived from the acquisition (:func:`acquisition_grid`: pixels the size of a
detector channel at the isocentre, the largest square inside the scanned
circle, centred on the rotation axis, axial orientation) or taken from a
reference CT series (:func:`reference_grid`, e.g. the series a scan was
simulated from, so that ``ctpnp compare`` can score the result against it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ctpnp.io.affine import affine_from_planes
from ctpnp.io.ctpd_tags import TAGS
from ctpnp.io.errors import DicomInputError
from ctpnp.io.headers import optional_text
from ctpnp.io.projections import ProjectionData, read_projections
from ctpnp.io.series import CTSeries, list_ct_series, slice_z_mm
from ctpnp.scanner.acquisition import Acquisition
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.scanner.rebinning import covered_z_range_mm, rebin_helical

__all__ = ["Grid", "Scan", "acquisition_grid", "read_scan", "reference_grid"]

SLICE_FOLDER = re.compile(r"slice_\d+")
"""Sub-folder names of the ``ctpnp simulate`` layout."""

Z_TOLERANCE_MM = 0.01
"""Largest difference (mm) between a scan's and a reference slice's axial position."""

MIN_VIEWS = 16
"""Fewest fan views per slice accepted: below it a fan-beam reconstruction (FBP or
PnP) is dominated by angular undersampling streaks, not by the anatomy."""


@dataclass(frozen=True, eq=False)
class Scan:
    """Fan-beam sinograms of the slices to reconstruct.

    Attributes:
        sinograms: ``(S, views, channels)`` float32 post-log line integrals.
        z_mm: ``(S,)`` axial position of each slice (mm, image-frame ``z``).
        acquisition: the detector and distances (the first scan's), views in
            increasing ``phi`` (a clockwise scan is read backwards).
        view_angles_rad: ``(views,)`` angles of rebinned helical data, else ``None``
            (the acquisition's own views).
        layout: ``"axial"``, ``"helical"`` or ``"slice folders"``.
        header: the first view's header (patient, study, acquisition attributes).
        sources: per slice, ``(SOPClassUID, SOPInstanceUID)`` of the first and last
            view it was reconstructed from.
        warnings: soft plausibility findings, one line each naming file and tag.
        value_types: how the numeric private tags were stored (tag → ``"FL"``/``"DS"``/``"US"``).
    """

    sinograms: np.ndarray
    z_mm: np.ndarray
    acquisition: Acquisition
    view_angles_rad: np.ndarray | None
    layout: str
    header: Dataset = field(default_factory=Dataset)
    sources: list[list[tuple[str, str]]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    value_types: dict[str, str] = field(default_factory=dict)

    def geometry(self, image_shape: tuple[int, int], pixel_mm: float) -> ScanGeometry:
        """The fan :class:`ScanGeometry` of every slice on an ``(H, W)`` grid of ``pixel_mm`` mm."""
        return self.acquisition.fan_geometry(image_shape, pixel_mm,
                                             view_angles_rad=self.view_angles_rad)


@dataclass(frozen=True, eq=False)
class Grid:
    """The image grid of a reconstruction.

    Attributes:
        image_shape: ``(H, W)`` pixels. pixel_mm: square pixel size (mm).
        affine: ``(4, 4)`` voxel ``(k, i, j)`` → RAS mm of the ``(S, H, W)`` volume.
        like: the reference series it was taken from, or ``None``.
    """

    image_shape: tuple[int, int]
    pixel_mm: float
    affine: np.ndarray
    like: CTSeries | None = None


def read_scan(folder: Path | str, z_mm: np.ndarray | None = None) -> Scan:
    """Read a DICOM-CT-PD scan or a folder of ``slice_NNNN`` scans (see the module docstring).

    Plausibility: fewer than :data:`MIN_VIEWS` views per slice is refused; an
    axial scan covering less than a full turn (views missing at either end,
    counted against its angular step and ``NumberofSourceAngularSteps``) is
    read with a warning in :attr:`Scan.warnings`.

    Args:
        folder: the input folder.
        z_mm: ``(S,)`` slice positions (mm) for helical data; default: the
            covered range at one detector row width at the isocentre.

    Raises:
        DicomInputError: a missing or empty folder, a CT image series instead
            of projections, unreadable, implausible or inconsistent scans
            (naming the file and the tag).
        ValueError: slices outside the range a helical scan covers.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DicomInputError("does not exist", path=folder)
    if not folder.is_dir():
        raise DicomInputError("is not a folder", path=folder)
    slice_folders = sorted(p for p in folder.iterdir()
                           if p.is_dir() and SLICE_FOLDER.fullmatch(p.name))
    if slice_folders:
        return _read_slice_folders(slice_folders)
    data = _read_projections(folder)
    acquisition = data.geometry
    if acquisition.scan_type == "axial":
        values, acquisition, warnings = _axial(data, folder)
        sinogram = values[None, :, acquisition.central_row_index, :]
        return Scan(sinogram, acquisition.focal_z_mm[:1].copy(), acquisition, None, "axial",
                    data.datasets[0], [_sources(data)], warnings, data.value_types)
    z_mm = _helical_slices(acquisition) if z_mm is None else np.asarray(z_mm, dtype=np.float64)
    try:
        fan = rebin_helical(data.data, acquisition, z_mm)
    except ValueError as error:
        raise ValueError(f"{folder}: helical scan cannot be rebinned: {error}") from error
    _check_view_count(fan.sinograms.shape[1], data)
    return Scan(fan.sinograms, fan.z_mm, acquisition, fan.view_angles_rad, "helical",
                data.datasets[0], [_sources(data)] * len(fan.z_mm), (), data.value_types)


def _read_projections(folder: Path) -> ProjectionData:
    """:func:`read_projections`, saying so when the folder holds CT images instead."""
    try:
        return read_projections(folder)
    except DicomInputError as error:
        try:
            found = list_ct_series(folder)
        except DicomInputError:
            raise error from None
        raise DicomInputError(
            f"holds a CT image series ({found[0].n_slices} slices, e.g. {found[0].first_file}), "
            "not DICOM-CT-PD projection data: reconstruct reads raw projections",
            path=folder) from error


def _sources(data: ProjectionData) -> list[tuple[str, str]]:
    """``(SOPClassUID, SOPInstanceUID)`` of the first and the last view (those that have them)."""
    found = []
    for ds in (data.datasets[0], data.datasets[-1]):
        item = (optional_text(ds, "SOPClassUID"), optional_text(ds, "SOPInstanceUID"))
        if all(item) and item not in found:
            found.append(item)
    return found


def _axial(data: ProjectionData, folder: Path
           ) -> tuple[np.ndarray, Acquisition, tuple[str, ...]]:
    """Views in increasing ``phi`` and the axial scan's plausibility warnings."""
    values, acquisition = data.data, data.geometry
    paths = data.paths
    if acquisition.n_views > 1 and acquisition.focal_angles_rad[-1] < \
            acquisition.focal_angles_rad[0]:
        values = np.ascontiguousarray(values[::-1])
        acquisition, paths = acquisition.reversed_views(), paths[::-1]
    _check_view_count(acquisition.n_views, data)
    _fan_of_axial(acquisition, folder)
    return values, acquisition, _missing_views(acquisition, paths)


def _check_view_count(n_views: int, data: ProjectionData) -> None:
    """Refuse fewer fan views per slice than :data:`MIN_VIEWS`."""
    if n_views < MIN_VIEWS:
        raise DicomInputError(
            f"the scan gives {n_views} views per slice ({data.geometry.n_views} files); a "
            f"reconstruction needs at least {MIN_VIEWS}", path=data.paths[0],
            field=TAGS["DetectorFocalCenterAngularPosition"].field)


def _missing_views(acquisition: Acquisition, paths: list[Path]) -> tuple[str, ...]:
    """A warning when an axial scan covers less than one turn, counting the missing views."""
    angles = acquisition.focal_angles_rad
    step = (angles[-1] - angles[0]) / (angles.size - 1)
    per_turn = 2 * math.pi / step
    missing = round(per_turn) - angles.size
    if missing < 1:
        return ()
    stated = acquisition.views_per_turn
    note = "" if abs(per_turn - stated) < 0.5 else (
        f"; its angular step makes {per_turn:.1f} views a turn, "
        f"{TAGS['NumberofSourceAngularSteps'].field} says {stated}")
    return (f"{paths[0]}: {TAGS['DetectorFocalCenterAngularPosition'].field}: {angles.size} "
            f"views cover {math.degrees(angles.size * step):.1f} degrees, {missing} view(s) "
            f"short of a full turn (missing at the ends{note}): expect streaks",)


def _read_slice_folders(folders: list[Path]) -> Scan:
    """One axial slice per folder; every folder must share the first one's scan geometry."""
    sinograms, z_mm, first, expected = [], [], None, None
    warnings, sources, header, value_types = [], [], None, {}
    for folder in folders:
        data = _read_projections(folder)
        values, acquisition, found = _axial(data, folder)
        geometry = _fan_of_axial(acquisition, folder)
        if first is None:
            first, expected = acquisition, geometry
            header, value_types = data.datasets[0], data.value_types
        elif geometry != expected or acquisition.mu_water_per_mm != first.mu_water_per_mm:
            raise DicomInputError(f"scan geometry differs from {folders[0]}'s (views, detector, "
                                  "distances or water attenuation)", path=folder)
        sinograms.append(values[:, acquisition.central_row_index, :])
        z_mm.append(float(acquisition.focal_z_mm[0]))
        warnings += found
        sources.append(_sources(data))
    return Scan(np.stack(sinograms), np.array(z_mm), first, None, "slice folders", header,
                sources, tuple(warnings), value_types)


def _fan_of_axial(acquisition: Acquisition, folder: Path) -> ScanGeometry:
    """The fan geometry of an axial scan on a unit grid (compares scans); errors name ``folder``."""
    try:
        return acquisition.fan_geometry((1, 1), 1.0)
    except ValueError as error:
        raise DicomInputError(f"not an axial fan-beam scan of one slice ({error})",
                              path=folder) from error


def _helical_slices(acquisition: Acquisition) -> np.ndarray:
    """``(S,)`` slice positions (mm): one detector row width at the isocentre apart,
    centred in the range the scan covers."""
    low, high = covered_z_range_mm(acquisition)
    step = acquisition.row_spacing_mm * acquisition.source_isocenter_mm \
        / acquisition.source_detector_mm
    count = math.floor((high - low) / step + 1e-9) + 1
    return (low + high) / 2 + step * (np.arange(count) - (count - 1) / 2)


def acquisition_grid(scan: Scan, size: int | None = None, pixel_mm: float | None = None) -> Grid:
    """The grid the scan itself suggests, centred on the rotation axis (see the module docstring).

    Args:
        scan: what is reconstructed.
        size: pixels per side; default the largest square inside the scanned circle.
        pixel_mm: pixel size (mm); default a channel's width at the isocentre.

    Raises:
        ValueError: a non-positive size or pixel size, or slices that are not
            evenly spaced (no regular volume).
    """
    a = scan.acquisition
    if pixel_mm is None:
        pixel_mm = a.channel_spacing_mm * a.source_isocenter_mm / a.source_detector_mm
    if size is None:
        radius_mm = a.source_isocenter_mm * math.sin(float(np.abs(a.fan_angles_rad).max()))
        size = math.floor(math.sqrt(2) * radius_mm / pixel_mm)
    if size < 1 or not pixel_mm > 0:
        raise ValueError(f"size={size} and pixel_mm={pixel_mm}: both must be positive")
    step = _slice_step_mm(scan)
    centre = (size - 1) / 2 * pixel_mm
    affine = affine_from_planes((-centre, -centre, float(scan.z_mm[0])), (1.0, 0.0, 0.0),
                                (0.0, 1.0, 0.0), (pixel_mm, pixel_mm), (0.0, 0.0, step))
    return Grid((size, size), float(pixel_mm), affine)


def _slice_step_mm(scan: Scan) -> float:
    """Signed distance (mm) between consecutive slices; one row width for a single slice."""
    a = scan.acquisition
    if len(scan.z_mm) == 1:
        return a.row_spacing_mm * a.source_isocenter_mm / a.source_detector_mm
    steps = np.diff(scan.z_mm)
    if np.ptp(steps) > Z_TOLERANCE_MM or abs(steps[0]) < Z_TOLERANCE_MM:
        raise ValueError(f"slice positions {np.round(scan.z_mm, 3).tolist()} mm are not evenly "
                         "spaced: no regular volume (give a reference series with --grid-like)")
    return float(steps.mean())


def reference_grid(series: CTSeries, scan: Scan) -> Grid:
    """The grid of a reference series: its shape, pixels, affine, and patient/study to join.

    Raises:
        ValueError: non-square pixels, or slices that are not where the scan's are
            (naming the reference's first file).
    """
    _, row_mm, column_mm = series.spacing_mm
    where = series.files[0]
    if not math.isclose(row_mm, column_mm, rel_tol=1e-4):
        raise ValueError(f"{where}: PixelSpacing {row_mm} x {column_mm} mm: square pixels needed")
    z_mm = slice_z_mm(series)
    if z_mm.shape != scan.z_mm.shape or np.abs(z_mm - scan.z_mm).max() > Z_TOLERANCE_MM:
        raise ValueError(f"{where}: the reference's {len(z_mm)} slices at z = "
                         f"{np.round(z_mm, 3).tolist()} mm are not the scan's "
                         f"{len(scan.z_mm)} at {np.round(scan.z_mm, 3).tolist()} mm")
    return Grid(tuple(series.hu.shape[1:]), float(row_mm), np.asarray(series.affine), series)
