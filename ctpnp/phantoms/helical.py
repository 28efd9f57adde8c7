"""Rays of a helical cone-beam scan with a cylindrical, focus-centred detector.

Same angle convention as :mod:`ctpnp.scanner.geometry`: at view angle ``theta`` the
source sits at ``-R (-sin theta, cos theta)`` in the ``(axis 0, axis 1)``
plane (``R`` = source–isocentre distance), the central ray points along
``(-sin theta, cos theta)`` and the channel axis along ``(cos theta, sin theta)``.
The source also moves along ``z`` (the rotation axis): ``z`` is given per view.

The detector is a cylinder of radius ``D`` (source–detector distance) around
the source with its axis along ``z``: channel coordinate ``u`` (arc length,
mm) means fan angle ``u / D``, row coordinate ``v`` (mm at the detector) means
a height ``v`` above the source plane. The detector element ``(u, v)`` of a
view is at ``source + D (cos(u/D) c + sin(u/D) l) + v e_z`` (``c`` central,
``l`` channel axis), and its ray runs from the source to it. This is the
geometry of clinical multi-row scanners (and of the DICOM-CT-PD format, whose
per-view source angle and ``z`` map to ``angles_rad`` and ``source_z_mm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["HelicalScan", "cylindrical_detector_rays"]


def cylindrical_detector_rays(
    angles_rad: np.ndarray,
    source_z_mm: np.ndarray,
    channel_positions_mm: np.ndarray,
    row_positions_mm: np.ndarray,
    *,
    source_isocenter_mm: float,
    source_detector_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Source points and unit directions of every detector element of every view.

    Args:
        angles_rad: ``(views,)`` source angles (rad).
        source_z_mm: ``(views,)`` source position along the rotation axis (mm).
        channel_positions_mm: ``(channels,)`` arc-length coordinate of the
            channel centres on the detector (mm), 0 on the central ray.
        row_positions_mm: ``(rows,)`` height of the row centres at the detector (mm).
        source_isocenter_mm: source to rotation axis distance (mm).
        source_detector_mm: source to detector distance (mm).

    Returns:
        ``(starts_mm, directions)``, each ``(views, rows, channels, 3)`` float64
        in the image frame ``(axis 0, axis 1, z)``.
    """
    theta = np.asarray(angles_rad, dtype=np.float64)[:, None, None]
    z_source = np.asarray(source_z_mm, dtype=np.float64)[:, None, None]
    if theta.shape[0] != z_source.shape[0]:
        raise ValueError(f"angles_rad has {theta.shape[0]} views but source_z_mm has "
                         f"{z_source.shape[0]}")
    gamma = np.asarray(channel_positions_mm, dtype=np.float64)[None, None, :] \
        / source_detector_mm
    v = np.asarray(row_positions_mm, dtype=np.float64)[None, :, None]
    central = (-np.sin(theta), np.cos(theta))
    lateral = (np.cos(theta), np.sin(theta))
    reach = (
        source_detector_mm * (np.cos(gamma) * central[0] + np.sin(gamma) * lateral[0]),
        source_detector_mm * (np.cos(gamma) * central[1] + np.sin(gamma) * lateral[1]),
        v,
    )
    directions = np.stack(np.broadcast_arrays(*reach), axis=-1)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    source = (-source_isocenter_mm * central[0], -source_isocenter_mm * central[1], z_source)
    starts = np.broadcast_to(np.stack(np.broadcast_arrays(*source), axis=-1), directions.shape)
    return starts.copy(), directions


@dataclass(frozen=True)
class HelicalScan:
    """A helical scan with uniform angular steps and constant table feed.

    Attributes:
        n_views: number of projections.
        views_per_turn: projections per 360 degrees.
        feed_mm_per_turn: source ``z`` advance per turn (pitch times collimation).
        n_channels, channel_spacing_mm: channels and their arc-length pitch at
            the detector (mm).
        n_rows, row_spacing_mm: detector rows and their pitch at the detector (mm).
        source_isocenter_mm, source_detector_mm: distances (mm).
        angle_start_rad, z_start_mm: angle and source ``z`` of the first view.
        channel_offset_mm: detector shift along the channels (e.g. a quarter channel).
    """

    n_views: int
    views_per_turn: int
    feed_mm_per_turn: float
    n_channels: int
    channel_spacing_mm: float
    n_rows: int
    row_spacing_mm: float
    source_isocenter_mm: float = 595.0
    source_detector_mm: float = 1085.6
    angle_start_rad: float = 0.0
    z_start_mm: float = 0.0
    channel_offset_mm: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_views", "views_per_turn", "n_channels", "channel_spacing_mm", "n_rows",
                     "row_spacing_mm", "source_isocenter_mm", "source_detector_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"HelicalScan.{name}={value!r} must be positive")
        if self.source_detector_mm <= self.source_isocenter_mm:
            raise ValueError("HelicalScan.source_detector_mm must exceed source_isocenter_mm")

    @property
    def angles_rad(self) -> np.ndarray:
        """``(views,)`` source angles (rad)."""
        return self.angle_start_rad + 2 * math.pi * np.arange(self.n_views) / self.views_per_turn

    @property
    def source_z_mm(self) -> np.ndarray:
        """``(views,)`` source ``z`` (mm)."""
        turns = (self.angles_rad - self.angle_start_rad) / (2 * math.pi)
        return self.z_start_mm + self.feed_mm_per_turn * turns

    @property
    def channel_positions_mm(self) -> np.ndarray:
        """``(channels,)`` arc-length coordinates of the channel centres (mm)."""
        c = np.arange(self.n_channels) - (self.n_channels - 1) / 2
        return c * self.channel_spacing_mm + self.channel_offset_mm

    @property
    def row_positions_mm(self) -> np.ndarray:
        """``(rows,)`` heights of the row centres at the detector (mm)."""
        return (np.arange(self.n_rows) - (self.n_rows - 1) / 2) * self.row_spacing_mm

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts_mm, directions)``, each ``(views, rows, channels, 3)``; see
        :func:`cylindrical_detector_rays`."""
        return cylindrical_detector_rays(
            self.angles_rad, self.source_z_mm, self.channel_positions_mm, self.row_positions_mm,
            source_isocenter_mm=self.source_isocenter_mm,
            source_detector_mm=self.source_detector_mm,
        )
