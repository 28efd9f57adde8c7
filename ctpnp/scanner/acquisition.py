"""A raw CT acquisition as described by DICOM-CT-PD: per-view source path and a multi-row detector.

Values are kept as the format states them (so a file round-trips exactly),
except that the reader puts detector rows in ``+z`` order
(:mod:`ctpnp.io.projections`); the methods translate them into the *image
frame* of :mod:`ctpnp.scanner.geometry`.

Orientation (pinned to the public reader that publishes reconstructions of the
TCIA LDCT-and-Projection-data raw scans, helix2fan; the evidence, and where
ODL's and FreeCT's readers differ, is in ``docs/dicom-ct-pd-conventions.md``):

* The patient frame is DICOM LPS (+x patient Left, +y Posterior, +z Superior).
  The image frame is ``axis 0 = +y`` (rows run to posterior), ``axis 1 = +x``
  (columns run to the patient's left), ``z = +z``: the standard axial display
  of :func:`ctpnp.io.axial_affine` and :func:`ctpnp.io.read_ct_series`.
* DICOM-CT-PD places the focal spot at ``x' = -rho sin(phi)``,
  ``y' = rho cos(phi)`` with ``phi = 0`` at 12 o'clock. Read as seen from the
  patient's feet with the patient supine, ``x'`` is patient left and ``y'`` is
  anterior, so in the image frame the source is at
  ``(axis 0, axis 1) = (-rho cos(phi), -rho sin(phi))``: the ctpnp view angle is
  ``theta = phi - pi/2`` (:func:`view_angle_from_dicom`). The axial position
  ``z0`` is the image-frame ``z``.
* Detector column index ``c`` (0-based) sits at ``u = (c + 1 - central_channel)
  * channel_spacing_mm``: columns increase in the direction the source moves as
  ``phi`` increases (the channel axis of :mod:`ctpnp.scanner.geometry`). Row index
  ``r`` sits at ``v = (r + 1 - central_row) * row_spacing_mm`` at the detector,
  rows increasing towards ``+z`` (the files store them the other way round).
  The central element is 1-based, as public readers treat it. ``phi`` may
  increase or decrease over the scan (:meth:`Acquisition.reversed_views`).
* The detector is centred on the *focal centre* ``(rho0, phi0, z0)``; a flying
  focal spot moves only the source, to ``(rho0 + drho, phi0 + dphi, z0 + dz)``.
  A cylindrical detector is an arc of radius ``source_detector_mm`` around the
  focal centre (``u`` is arc length), a flat one a plane at that distance.

``mu_water_per_mm`` is per millimetre (the reader converts per-cm values).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ctpnp.scanner.geometry import ScanGeometry

__all__ = [
    "Acquisition",
    "AcquisitionFieldError",
    "dicom_angle_from_view",
    "uniform_angle_step",
    "view_angle_from_dicom",
]

ScanType = Literal["axial", "helical"]
DetectorKind = Literal["cylindrical", "flat"]
FlyingFocalSpot = Literal["FFSNONE", "FFSZ", "FFSXY", "FFSXYZ"]
_PER_VIEW = ("focal_angles_rad", "focal_z_mm", "source_angle_shift_rad", "source_z_shift_mm",
             "source_radial_shift_mm")


class AcquisitionFieldError(ValueError):
    """An invalid :class:`Acquisition` value; ``field`` names the attribute."""

    def __init__(self, field_name: str, value: object, expected: str):
        self.field = field_name
        super().__init__(f"Acquisition.{field_name}={value!r:.80} is invalid: expected {expected}")


def view_angle_from_dicom(phi_rad: ArrayLike) -> np.ndarray:
    """ctpnp view angle ``theta`` (rad) of DICOM-CT-PD angular positions ``phi`` (rad)."""
    return np.asarray(phi_rad, dtype=np.float64) - math.pi / 2


def dicom_angle_from_view(theta_rad: ArrayLike) -> np.ndarray:
    """DICOM-CT-PD angular position ``phi`` (rad) of ctpnp view angles ``theta`` (rad)."""
    return np.asarray(theta_rad, dtype=np.float64) + math.pi / 2


def _frozen(values: ArrayLike, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    if array.shape != shape:
        raise AcquisitionFieldError(name, array.shape, f"shape {shape}")
    if not np.isfinite(array).all():
        raise AcquisitionFieldError(name, "non-finite values", "finite numbers")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Acquisition:
    """A fan-beam CT acquisition with a multi-row detector (DICOM-CT-PD semantics).

    Attributes:
        scan_type: ``"axial"`` (constant ``z``) or ``"helical"``.
        focal_angles_rad: ``(views,)`` angular position ``phi0`` of the focal
            centre (rad, DICOM-CT-PD convention, unwrapped).
        focal_z_mm: ``(views,)`` axial position ``z0`` of the focal centre (mm).
        n_rows, n_channels: detector rows (along ``z``) and columns (channels).
        channel_spacing_mm, row_spacing_mm: element pitch at the detector (mm;
            arc length along a cylindrical detector).
        detector: ``"cylindrical"`` (focus-centred arc) or ``"flat"``.
        source_isocenter_mm: focal centre to rotation axis ``rho0`` (mm).
        source_detector_mm: focal centre to detector centre (mm).
        central_channel, central_row: 1-based (column, row) of the element hit
            by the ray through the isocentre; fractions allowed.
        views_per_turn: views per 360 degrees (each flying-focal-spot position a view).
        mu_water_per_mm: attenuation of water (1/mm) used for HU.
        source_angle_shift_rad, source_z_shift_mm, source_radial_shift_mm:
            ``(views,)`` flying-focal-spot offsets of the source from the focal
            centre (rad, mm, mm); zeros without a flying focal spot.
        flying_focal_spot: ``"FFSNONE"``, ``"FFSZ"``, ``"FFSXY"`` or ``"FFSXYZ"``.
        photons: ``(views, channels)`` incident photons per reading
            (noise-equivalent), or ``None`` when unknown.

    Invalid values raise :class:`AcquisitionFieldError` (a ``ValueError``)
    naming the field and the value. Arrays are stored read-only as float64.
    """

    scan_type: ScanType
    focal_angles_rad: np.ndarray
    focal_z_mm: np.ndarray
    n_rows: int
    n_channels: int
    channel_spacing_mm: float
    row_spacing_mm: float
    detector: DetectorKind
    source_isocenter_mm: float
    source_detector_mm: float
    central_channel: float
    central_row: float
    views_per_turn: int
    mu_water_per_mm: float
    source_angle_shift_rad: np.ndarray | None = None
    source_z_shift_mm: np.ndarray | None = None
    source_radial_shift_mm: np.ndarray | None = None
    flying_focal_spot: FlyingFocalSpot = "FFSNONE"
    photons: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        _expect(self.scan_type in ("axial", "helical"), "scan_type", self.scan_type,
                "'axial' or 'helical'")
        _expect(self.detector in ("cylindrical", "flat"), "detector", self.detector,
                "'cylindrical' or 'flat'")
        _expect(self.flying_focal_spot in ("FFSNONE", "FFSZ", "FFSXY", "FFSXYZ"),
                "flying_focal_spot", self.flying_focal_spot, "FFSNONE, FFSZ, FFSXY or FFSXYZ")
        for name in ("n_rows", "n_channels", "views_per_turn"):
            value = getattr(self, name)
            _expect(isinstance(value, int | np.integer) and value >= 1, name, value,
                    "a positive integer")
            object.__setattr__(self, name, int(value))
        for name in ("channel_spacing_mm", "row_spacing_mm", "source_isocenter_mm",
                     "source_detector_mm", "mu_water_per_mm"):
            value = getattr(self, name)
            _expect(_is_number(value) and value > 0, name, value, "a positive finite number")
            object.__setattr__(self, name, float(value))
        for name in ("central_channel", "central_row"):
            value = getattr(self, name)
            _expect(_is_number(value), name, value, "a finite number")
            object.__setattr__(self, name, float(value))
        _expect(self.source_detector_mm > self.source_isocenter_mm, "source_detector_mm",
                self.source_detector_mm,
                f"more than source_isocenter_mm={self.source_isocenter_mm}")
        angles = np.asarray(self.focal_angles_rad)
        _expect(angles.ndim == 1 and angles.size >= 1, "focal_angles_rad", angles.shape,
                "a non-empty 1D array")
        views = (angles.size,)
        for name in _PER_VIEW:
            value = getattr(self, name)
            object.__setattr__(self, name, _frozen(np.zeros(views) if value is None else value,
                                                   name, views))
        if self.scan_type == "axial":
            _expect(np.ptp(self.focal_z_mm) <= 1e-3, "focal_z_mm",
                    f"range {np.ptp(self.focal_z_mm):.4g} mm", "a constant z for an axial scan")
        if self.photons is not None:
            photons = _frozen(self.photons, "photons", (angles.size, self.n_channels))
            _expect(bool((photons > 0).all()), "photons", "non-positive values",
                    "positive photon counts")
            object.__setattr__(self, "photons", photons)
        fan = self.channel_positions_mm
        half = np.abs(fan).max() / self.source_detector_mm
        half = half if self.detector == "cylindrical" else math.atan(half)
        _expect(half < math.pi / 2 - 1e-3, "n_channels", self.n_channels,
                "a fan narrower than 180 degrees")

    # ------------------------------------------------------------------ factories
    @classmethod
    def uniform(
        cls,
        *,
        n_views: int,
        views_per_turn: int,
        n_rows: int,
        n_channels: int,
        channel_spacing_mm: float,
        row_spacing_mm: float,
        feed_mm_per_turn: float = 0.0,
        detector: DetectorKind = "cylindrical",
        source_isocenter_mm: float = 595.0,
        source_detector_mm: float = 1085.6,
        first_view_angle_rad: float = 0.0,
        first_z_mm: float = 0.0,
        mu_water_per_mm: float = 0.0192,
        **kwargs: object,
    ) -> Acquisition:
        """Equal angular steps (increasing ``phi``) and constant feed; axial when the feed is 0.

        ``first_view_angle_rad`` is the ctpnp view angle ``theta`` of view 0;
        the central element is the detector centre. Values are rounded to
        float32, as DICOM-CT-PD stores them, so the scan round-trips exactly.
        Further keywords (flying focal spot, photons) are passed on.
        """
        turns = np.arange(n_views) / views_per_turn
        phi = dicom_angle_from_view(first_view_angle_rad + 2 * math.pi * turns)
        z = first_z_mm + feed_mm_per_turn * turns
        return cls(
            scan_type="axial" if feed_mm_per_turn == 0 else "helical",
            focal_angles_rad=phi.astype(np.float32), focal_z_mm=z.astype(np.float32),
            n_rows=n_rows, n_channels=n_channels,
            channel_spacing_mm=_f32(channel_spacing_mm), row_spacing_mm=_f32(row_spacing_mm),
            detector=detector, source_isocenter_mm=_f32(source_isocenter_mm),
            source_detector_mm=_f32(source_detector_mm),
            central_channel=(n_channels + 1) / 2, central_row=(n_rows + 1) / 2,
            views_per_turn=views_per_turn, mu_water_per_mm=mu_water_per_mm, **kwargs,
        )

    def reversed_views(self) -> Acquisition:
        """The same scan with its views in reverse order (a clockwise scan read backwards)."""
        per_view = {name: getattr(self, name)[::-1] for name in _PER_VIEW}
        photons = None if self.photons is None else self.photons[::-1]
        return dataclasses.replace(self, **per_view, photons=photons)

    # ------------------------------------------------------------------ derived values
    @property
    def n_views(self) -> int:
        """Number of views."""
        return int(self.focal_angles_rad.size)

    @property
    def view_angles_rad(self) -> np.ndarray:
        """``(views,)`` ctpnp view angle ``theta`` of the focal centre (rad, image frame)."""
        return view_angle_from_dicom(self.focal_angles_rad)

    @property
    def channel_positions_mm(self) -> np.ndarray:
        """``(channels,)`` detector coordinate ``u`` of the channel centres (mm)."""
        return (np.arange(self.n_channels) + 1 - self.central_channel) * self.channel_spacing_mm

    @property
    def row_positions_mm(self) -> np.ndarray:
        """``(rows,)`` height ``v`` of the row centres at the detector (mm)."""
        return (np.arange(self.n_rows) + 1 - self.central_row) * self.row_spacing_mm

    @property
    def fan_angles_rad(self) -> np.ndarray:
        """``(channels,)`` angle of each channel's ray to the central ray (rad)."""
        u = self.channel_positions_mm
        if self.detector == "cylindrical":
            return u / self.source_detector_mm
        return np.arctan2(u, self.source_detector_mm)

    @property
    def central_row_index(self) -> int:
        """0-based row nearest the central element: the row of an axial fan slice."""
        return int(np.clip(round(self.central_row - 1), 0, self.n_rows - 1))

    @property
    def has_flying_focal_spot(self) -> bool:
        """Whether any view's source is offset from its focal centre."""
        return any(bool(np.any(getattr(self, name) != 0)) for name in _PER_VIEW[2:])

    def source_positions_mm(self) -> np.ndarray:
        """``(views, 3)`` focal spot (source) positions in the image frame (mm)."""
        theta = self.view_angles_rad + self.source_angle_shift_rad
        radius = self.source_isocenter_mm + self.source_radial_shift_mm
        return np.stack([radius * np.sin(theta), -radius * np.cos(theta),
                         self.focal_z_mm + self.source_z_shift_mm], axis=-1)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every measured ray as its source point and unit direction.

        Returns:
            ``(starts_mm, directions)``, each ``(views, rows, channels, 3)``
            float64 in the image frame ``(axis 0, axis 1, z)``.
        """
        theta = self.view_angles_rad[:, None, None]
        central = (-np.sin(theta), np.cos(theta))
        lateral = (np.cos(theta), np.sin(theta))
        u = self.channel_positions_mm[None, None, :]
        if self.detector == "cylindrical":
            gamma = u / self.source_detector_mm
            along, across = (self.source_detector_mm * np.cos(gamma),
                             self.source_detector_mm * np.sin(gamma))
        else:
            along, across = self.source_detector_mm, u
        focal = (-self.source_isocenter_mm * central[0], -self.source_isocenter_mm * central[1],
                 self.focal_z_mm[:, None, None])
        element = [focal[k] + along * central[k] + across * lateral[k] for k in range(2)]
        element.append(focal[2] + self.row_positions_mm[None, :, None])
        source = self.source_positions_mm()[:, None, None, :]
        element = np.stack(np.broadcast_arrays(*element), axis=-1)
        directions = element - source
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
        return np.broadcast_to(source, directions.shape).copy(), directions

    def fan_geometry(
        self,
        image_shape: tuple[int, int],
        pixel_mm: float,
        *,
        view_angles_rad: ArrayLike | None = None,
    ) -> ScanGeometry:
        """The 2D fan-beam :class:`ScanGeometry` of one slice, for :class:`ctpnp.Tomography`.

        Without ``view_angles_rad`` this is the axial scan itself: its sinogram
        is ``data[:, central_row_index, :]`` (the cone angle of that row is
        ignored; exact for the central plane). The views must step uniformly
        through increasing angles over at most one turn, without flying focal spot.
        With ``view_angles_rad`` (uniform, increasing) the detector is reused
        with those angles, e.g. for rebinned helical data.

        Raises:
            AcquisitionFieldError: a helical scan, a flying focal spot, or
                angles that are not uniform and increasing.
        """
        if view_angles_rad is None:
            _expect(self.scan_type == "axial", "scan_type", self.scan_type,
                    "'axial' (rebin helical scans with ctpnp.scanner.rebinning)")
            _expect(not self.has_flying_focal_spot, "source_angle_shift_rad",
                    "non-zero flying-focal-spot offsets", "none for a fan slice (rebin first)")
            angles, name = self.view_angles_rad, "focal_angles_rad"
        else:
            angles, name = np.asarray(view_angles_rad, dtype=np.float64), "view_angles_rad"
        first, step = uniform_angle_step(angles, name)
        return ScanGeometry(
            "fan", tuple(image_shape), pixel_mm, angles.size, self.n_channels,
            self.channel_spacing_mm,
            angle_start_rad=first - step / 2,
            angular_range_rad=min(angles.size * step, 2 * math.pi),
            channel_offset_mm=float(self.channel_positions_mm.mean()),
            detector="curved" if self.detector == "cylindrical" else "flat",
            source_isocenter_mm=self.source_isocenter_mm,
            source_detector_mm=self.source_detector_mm,
        )


def uniform_angle_step(angles_rad: np.ndarray, name: str = "angles_rad") -> tuple[float, float]:
    """``(first, step)`` of angles that increase uniformly over at most one turn (rad).

    A total within 1e-4 rad of a full turn counts as a full turn (float32 storage).

    Raises:
        AcquisitionFieldError: naming ``name``, if they do not.
    """
    angles = np.asarray(angles_rad, dtype=np.float64)
    _expect(angles.ndim == 1 and angles.size >= 2, name, angles.shape, "at least two angles")
    step = (angles[-1] - angles[0]) / (angles.size - 1)
    deviation = np.abs(angles - (angles[0] + step * np.arange(angles.size))).max()
    _expect(step > 0 and deviation <= 1e-3 * step, name,
            f"step {step:.6g} rad, deviation {deviation:.3g} rad", "uniform increasing steps")
    if abs(angles.size * step - 2 * math.pi) <= 1e-4:
        step = 2 * math.pi / angles.size
    _expect(angles.size * step <= 2 * math.pi, name, f"{angles.size * step:.6f} rad in total",
            "at most one turn")
    return float(angles[0]), float(step)


def _f32(value: float) -> float:
    return float(np.float32(value))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)


def _expect(ok: bool, field_name: str, value: object, expected: str) -> None:
    if not ok:
        raise AcquisitionFieldError(field_name, value, expected)
