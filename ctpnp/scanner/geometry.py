"""Scan geometry of a 2D CT acquisition: source path, detector and image grid.

Coordinate frame (the *image frame*), shared by every module of ctpnp:

* ``axis 0`` runs down the image rows (increasing row index ``i``),
  ``axis 1`` runs along the columns (increasing column index ``j``), and
  ``z`` runs along the rotation axis. All lengths are millimetres, the origin
  is the centre of the image grid. A pixel ``(i, j)`` of an ``(H, W)`` image has
  its centre at ``((i - (H - 1) / 2) * pixel_mm, (j - (W - 1) / 2) * pixel_mm)``.
* A view angle ``theta`` (radians) rotates from axis 0 towards axis 1. At
  ``theta = 0`` the source (fan beam) or the ray origin side (parallel beam)
  lies on the negative axis-1 side and rays travel towards ``+axis 1``; the
  detector's channel axis then points along ``+axis 0``. In general the
  central ray direction is ``(-sin theta, cos theta)`` and the channel axis is
  ``(cos theta, sin theta)``.
* Channel ``c`` of ``C`` sits at the detector coordinate
  ``(c - (C - 1) / 2) * channel_spacing_mm + channel_offset_mm``. On a flat
  detector this is a distance along the detector line; on a curved
  (cylindrical, focus-centred) detector it is an arc length on the circle of
  radius ``source_detector_mm`` around the source, i.e. the fan angle is
  ``coordinate / source_detector_mm``.

This frame is the one of ODL's 2D geometries with their default orientation,
so :mod:`ctpnp.projector` hands these values to ODL unchanged. Sinograms are laid
out ``(views, channels)`` in this order.

Helical and cone-beam scans extend the same description with detector rows
and a source ``z`` that advances with the angle; :meth:`ScanGeometry.rays`
already returns 3D points so that exact line integrals (phantoms) and
rebinning speak one language.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["CLINICAL", "ScanGeometry"]

BeamKind = Literal["parallel", "fan"]
DetectorShape = Literal["flat", "curved"]


@dataclass(frozen=True)
class _ClinicalFan:
    """Third-generation clinical scanner reference values (mm, rad)."""

    source_isocenter_mm: float = 595.0
    source_detector_mm: float = 1085.6
    n_channels: int = 736
    channel_spacing_mm: float = 1.2858
    views_per_turn: int = 1152

    @property
    def pixel_mm_at_isocenter(self) -> float:
        """Channel spacing projected to the isocentre (mm): the grid it resolves natively."""
        return self.channel_spacing_mm * self.source_isocenter_mm / self.source_detector_mm


CLINICAL = _ClinicalFan()


@dataclass(frozen=True)
class ScanGeometry:
    """A 2D parallel- or fan-beam scan and the image grid it is reconstructed on.

    Attributes:
        kind: ``"parallel"`` or ``"fan"``.
        image_shape: ``(H, W)`` pixels of the reconstruction grid.
        pixel_mm: isotropic pixel size (mm).
        n_views: number of projection angles.
        n_channels: number of detector channels per view.
        channel_spacing_mm: channel pitch at the detector (mm; arc length on a
            curved detector).
        angle_start_rad: angle of the first view (rad).
        angular_range_rad: angles cover ``[start, start + range)`` uniformly (rad).
        channel_offset_mm: shift of the channel grid along the detector (mm),
            e.g. a quarter-channel offset.
        detector: ``"flat"`` or ``"curved"`` (fan beam only).
        source_isocenter_mm: source to rotation axis distance (fan beam, mm).
        source_detector_mm: source to detector distance (fan beam, mm).

    Invalid values raise ``ValueError`` naming the field and the value.
    """

    kind: BeamKind
    image_shape: tuple[int, int]
    pixel_mm: float
    n_views: int
    n_channels: int
    channel_spacing_mm: float
    angle_start_rad: float = 0.0
    angular_range_rad: float = 2 * math.pi
    channel_offset_mm: float = 0.0
    detector: DetectorShape = "flat"
    source_isocenter_mm: float | None = None
    source_detector_mm: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(n) for n in self.image_shape))
        _check(self.kind in ("parallel", "fan"), "kind", self.kind, "'parallel' or 'fan'")
        _check(self.detector in ("flat", "curved"), "detector", self.detector, "'flat' or 'curved'")
        _check(
            len(self.image_shape) == 2 and min(self.image_shape) > 0,
            "image_shape", self.image_shape, "two positive integers (H, W)",
        )
        _check_positive(self, "pixel_mm", "n_views", "n_channels", "channel_spacing_mm")
        _check(
            0 < self.angular_range_rad <= 2 * math.pi + 1e-9,
            "angular_range_rad", self.angular_range_rad, "in (0, 2*pi]",
        )
        _check(math.isfinite(self.angle_start_rad), "angle_start_rad", self.angle_start_rad,
               "a finite number")
        _check(math.isfinite(self.channel_offset_mm), "channel_offset_mm",
               self.channel_offset_mm, "a finite number")
        if self.kind == "parallel":
            _check(self.detector == "flat", "detector", self.detector,
                   "'flat' for a parallel beam")
            for name in ("source_isocenter_mm", "source_detector_mm"):
                _check(getattr(self, name) is None, name, getattr(self, name),
                       "None for a parallel beam")
            return
        _check_positive(self, "source_isocenter_mm", "source_detector_mm")
        _check(
            self.source_detector_mm > self.source_isocenter_mm,
            "source_detector_mm", self.source_detector_mm,
            f"greater than source_isocenter_mm={self.source_isocenter_mm}",
        )
        half_fan = np.abs(self._fan_angles_unchecked()).max()
        _check(
            half_fan < math.pi / 2 - 1e-3,
            "n_channels", self.n_channels,
            f"a fan narrower than 180 degrees (got half-angle {math.degrees(half_fan):.1f} deg)",
        )
        _check(
            self.source_isocenter_mm > self.image_radius_mm,
            "source_isocenter_mm", self.source_isocenter_mm,
            f"larger than the image radius {self.image_radius_mm:.1f} mm (source inside the image)",
        )

    # ------------------------------------------------------------------ factories
    @classmethod
    def parallel(
        cls,
        image_shape: tuple[int, int],
        pixel_mm: float,
        n_views: int,
        n_channels: int | None = None,
        channel_spacing_mm: float | None = None,
        angular_range_rad: float = math.pi,
        **kwargs,
    ) -> ScanGeometry:
        """Parallel beam over ``angular_range_rad`` (default pi).

        By default one channel per pixel width, enough channels to cover the
        image diagonal.
        """
        spacing = pixel_mm if channel_spacing_mm is None else channel_spacing_mm
        if n_channels is None:
            diagonal = math.hypot(*image_shape) * pixel_mm
            n_channels = math.ceil(diagonal / spacing) + 1
        return cls("parallel", tuple(image_shape), pixel_mm, n_views, n_channels, spacing,
                   angular_range_rad=angular_range_rad, **kwargs)

    @classmethod
    def clinical_fan(
        cls,
        image_shape: tuple[int, int],
        pixel_mm: float,
        n_views: int = CLINICAL.views_per_turn,
        *,
        detector: DetectorShape = "curved",
        **kwargs,
    ) -> ScanGeometry:
        """A full-turn clinical fan beam scaled to an image grid.

        Distances are the clinical ones (source-isocentre 595 mm,
        source-detector 1085.6 mm). The channel pitch is the clinical
        1.2858 mm scaled by ``pixel_mm / 0.7047 mm`` so that one channel, projected
        to the isocentre, spans one pixel; the channel count is what covers
        the circle around the whole image grid. A 512² grid of 0.7 mm pixels
        gets about the clinical 736 channels; a 256² grid of the same field of
        view gets half as many and projects four times faster.
        """
        spacing = CLINICAL.channel_spacing_mm * pixel_mm / CLINICAL.pixel_mm_at_isocenter
        radius = 0.5 * math.hypot(*image_shape) * pixel_mm
        if radius >= CLINICAL.source_isocenter_mm:
            raise ValueError(
                f"image_shape={tuple(image_shape)} with pixel_mm={pixel_mm} spans "
                f"{2 * radius:.0f} mm, more than the clinical source circle allows"
            )
        half_fan = math.asin(radius / CLINICAL.source_isocenter_mm)
        if detector == "curved":
            extent_mm = 2 * half_fan * CLINICAL.source_detector_mm
        else:
            extent_mm = 2 * math.tan(half_fan) * CLINICAL.source_detector_mm
        n_channels = math.ceil(extent_mm / spacing) + 1
        return cls("fan", tuple(image_shape), pixel_mm, n_views, n_channels, spacing,
                   detector=detector,
                   source_isocenter_mm=CLINICAL.source_isocenter_mm,
                   source_detector_mm=CLINICAL.source_detector_mm, **kwargs)

    def with_image_grid(self, image_shape: tuple[int, int], pixel_mm: float) -> ScanGeometry:
        """The same scan seen on another image grid (e.g. a finer one for simulation)."""
        return dataclasses.replace(self, image_shape=tuple(image_shape), pixel_mm=pixel_mm)

    # ------------------------------------------------------------------ derived values
    @property
    def image_radius_mm(self) -> float:
        """Radius of the circle through the corners of the image grid (mm)."""
        return 0.5 * math.hypot(*self.image_shape) * self.pixel_mm

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(views, channels)``."""
        return (self.n_views, self.n_channels)

    @property
    def angles_rad(self) -> np.ndarray:
        """View angles (rad), shape ``(views,)``: cell centres of a uniform partition."""
        step = self.angular_range_rad / self.n_views
        return self.angle_start_rad + step * (np.arange(self.n_views) + 0.5)

    @property
    def channel_positions_mm(self) -> np.ndarray:
        """Detector coordinate of each channel centre (mm), shape ``(channels,)``."""
        c = np.arange(self.n_channels) - (self.n_channels - 1) / 2
        return c * self.channel_spacing_mm + self.channel_offset_mm

    @property
    def fan_angles_rad(self) -> np.ndarray:
        """Angle of each channel's ray to the central ray (rad), fan beam only."""
        if self.kind != "fan":
            raise ValueError("fan_angles_rad is defined for kind='fan' only")
        return self._fan_angles_unchecked()

    def _fan_angles_unchecked(self) -> np.ndarray:
        u = self.channel_positions_mm
        if self.detector == "curved":
            return u / self.source_detector_mm
        return np.arctan2(u, self.source_detector_mm)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every measured ray as a start point and a unit direction.

        Returns:
            ``(starts_mm, directions)``, both ``(views, channels, 3)`` float64 in
            the image frame ``(axis 0, axis 1, z)``. For a fan beam the start is
            the source position; for a parallel beam it is a point on the line
            at distance ``2 * image_radius_mm`` before the isocentre plane. The
            ray continues to infinity in both directions for the purpose of a
            line integral over a finite object.
        """
        theta = self.angles_rad[:, None]
        central = np.stack(np.broadcast_arrays(-np.sin(theta), np.cos(theta)), axis=-1)
        lateral = np.stack(np.broadcast_arrays(np.cos(theta), np.sin(theta)), axis=-1)
        if self.kind == "parallel":
            u = self.channel_positions_mm[None, :, None]
            starts = u * lateral - 2 * self.image_radius_mm * central
            directions = np.broadcast_to(central, starts.shape)
        else:
            gamma = self.fan_angles_rad[None, :, None]
            starts = np.broadcast_to(-self.source_isocenter_mm * central,
                                     (self.n_views, self.n_channels, 2))
            directions = np.cos(gamma) * central + np.sin(gamma) * lateral
        z = np.zeros((self.n_views, self.n_channels, 1))
        return (np.concatenate([starts, z], axis=-1),
                np.concatenate([np.broadcast_to(directions, starts.shape), z], axis=-1))


def _check(ok: bool, field: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"ScanGeometry.{field}={value!r} is invalid: expected {expected}")


def _check_positive(geometry: ScanGeometry, *fields: str) -> None:
    for name in fields:
        value = getattr(geometry, name)
        _check(
            value is not None and isinstance(value, int | float) and math.isfinite(value)
            and value > 0,
            name, value, "a positive finite number",
        )
