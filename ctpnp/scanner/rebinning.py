"""Helical → fan-beam single-slice rebinning, so helical scans reconstruct slice by slice in 2D.

For a target slice ``z_s`` every ray of the output fan sinogram (view angle
``theta_a`` of one turn, channel ``c``) is estimated from the helical views at
the same angle in every turn, ``a, a + N, a + 2N, ...`` (``N`` views per turn).
A detector ray of such a view is assigned the ``z`` at which it passes the
rotation axis closest in the transverse plane (in-plane distance
``R cos(gamma)`` from the source; Noo, Defrise & Clackdoyle 1999):

* cylindrical detector: ``z = z_src + (v - dz) R cos(gamma) / D``;
* flat detector: ``z = z_src + (v - dz) R cos(gamma)^2 / D``;

with ``v`` the row height at the detector, ``R`` source–isocentre, ``D``
source–detector distance, ``z_src = z0 + dz`` the source and ``dz`` its
flying-focal-spot offset. Of the turns whose detector spans ``z_s``, the one
with its source nearest ``z_s`` (smallest cone angle) is used, interpolated
linearly between its two rows. Where no turn spans ``z_s`` (a pitch leaving
gaps) the value is interpolated linearly in ``z`` between the nearest row
crossings below and above, from adjacent turns. 180-degree complementary rays
are not used.

The output is a 2D fan sinogram over one full turn with increasing angles
and the detector's channels, reconstructed by :class:`ctpnp.Tomography` on
:meth:`FanSlices.geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ctpnp.scanner.acquisition import Acquisition
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["FanSlices", "covered_z_range_mm", "rebin_helical"]

_ROW_TOLERANCE = 1e-6
"""Rows (fraction of a row) by which a crossing may miss the detector edge (rounding)."""


@dataclass(frozen=True, eq=False)
class FanSlices:
    """Rebinned fan-beam sinograms of axial slices.

    Attributes:
        sinograms: ``(slices, views, channels)`` float32 post-log line integrals.
        z_mm: ``(slices,)`` position of each slice on the rotation axis (mm).
        view_angles_rad: ``(views,)`` increasing ctpnp view angles of one turn (rad).
        acquisition: the helical scan they were rebinned from (detector and distances).
    """

    sinograms: np.ndarray
    z_mm: np.ndarray
    view_angles_rad: np.ndarray
    acquisition: Acquisition

    def geometry(self, image_shape: tuple[int, int], pixel_mm: float) -> ScanGeometry:
        """The fan :class:`ScanGeometry` of every slice on an ``(H, W)`` grid of ``pixel_mm``."""
        return self.acquisition.fan_geometry(image_shape, pixel_mm,
                                             view_angles_rad=self.view_angles_rad)


@dataclass(frozen=True)
class _Helix:
    """Views grouped by angle: ``views[a, k]`` is the view at angle ``a`` in turn ``k``."""

    views: np.ndarray        # (N, K) int, -1 where the scan has no such view
    angles_rad: np.ndarray   # (N,) increasing view angles of the output turn
    source_z_mm: np.ndarray  # (N, K) source z, NaN where there is no view
    z_shift_mm: np.ndarray   # (N, K) flying-focal-spot z offset
    slope: np.ndarray        # (C,) dz_crossing / dv at the detector


def _helix(acquisition: Acquisition) -> _Helix:
    """Group the views by angle and precompute the row-to-z slopes; checks the scan."""
    a = acquisition
    for name in ("source_angle_shift_rad", "source_radial_shift_mm"):
        if np.any(getattr(a, name) != 0):
            raise ValueError(f"Acquisition.{name} is non-zero: an in-plane flying focal spot "
                             "needs angular resampling, which this rebinning does not do")
    n = a.views_per_turn
    if a.n_views < n:
        raise ValueError(f"Acquisition.n_views={a.n_views} is less than one turn "
                         f"(views_per_turn={n})")
    theta = a.view_angles_rad
    step = 2 * math.pi / n * np.sign(theta[-1] - theta[0])
    deviation = np.abs(theta - theta[0] - step * np.arange(a.n_views)).max()
    if deviation > 1e-3 * abs(step):
        raise ValueError(f"Acquisition.focal_angles_rad deviate {deviation:.3g} rad from "
                         f"uniform steps of 2*pi/views_per_turn ({abs(step):.6g} rad)")
    turns = -(-a.n_views // n)
    views = np.arange(n)[:, None] + n * np.arange(turns)[None, :]
    views[views >= a.n_views] = -1
    angles = theta[0] + step * np.arange(n)
    if step < 0:
        views, angles = views[::-1], angles[::-1]
    present = views >= 0
    source_z = np.where(present, (a.focal_z_mm + a.source_z_shift_mm)[views], np.nan)
    gamma = a.fan_angles_rad
    cos = np.cos(gamma) if a.detector == "cylindrical" else np.cos(gamma) ** 2
    return _Helix(views, angles, source_z, np.where(present, a.source_z_shift_mm[views], 0.0),
                  a.source_isocenter_mm * cos / a.source_detector_mm)


def _row_crossings(helix: _Helix, rows_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K, C)`` z at which the first and the last detector row cross the axis region."""
    base = helix.source_z_mm[..., None]
    shift = helix.z_shift_mm[..., None]
    return (base + (rows_mm[0] - shift) * helix.slope,
            base + (rows_mm[-1] - shift) * helix.slope)


def covered_z_range_mm(acquisition: Acquisition) -> tuple[float, float]:
    """``(low, high)`` slice positions (mm) for which every output ray has data."""
    low, high = _row_crossings(_helix(acquisition), acquisition.row_positions_mm)
    return float(np.nanmin(low, axis=1).max()), float(np.nanmax(high, axis=1).min())


def rebin_helical(data: ArrayLike, acquisition: Acquisition, z_mm: ArrayLike) -> FanSlices:
    """Single-slice rebinning of a helical scan to fan-beam sinograms at ``z_mm``.

    Args:
        data: ``(views, rows, channels)`` post-log line integrals.
        acquisition: its geometry; angles must step uniformly by one
            ``views_per_turn``-th of a turn; flying focal spot only along ``z``.
        z_mm: slice positions on the rotation axis (mm), scalar or ``(slices,)``,
            within :func:`covered_z_range_mm`.

    Returns:
        :class:`FanSlices` with ``(slices, views_per_turn, channels)`` sinograms.

    Raises:
        ValueError: a shape mismatch, an unsupported scan, or a slice outside
            the covered range.
    """
    values = np.asarray(data, dtype=np.float32)
    a = acquisition
    expected = (a.n_views, a.n_rows, a.n_channels)
    if values.shape != expected:
        raise ValueError(f"data has shape {values.shape}, the acquisition needs {expected}")
    slices = np.atleast_1d(np.asarray(z_mm, dtype=np.float64))
    helix = _helix(a)
    low, high = covered_z_range_mm(a)
    outside = slices[(slices < low - 1e-6) | (slices > high + 1e-6)]
    if outside.size:
        raise ValueError(f"z_mm={outside.tolist()} lies outside the range covered by the scan "
                         f"[{low:.3f}, {high:.3f}] mm")
    sinograms = np.stack([_rebin_slice(values, a, helix, z) for z in slices])
    return FanSlices(sinograms, slices, helix.angles_rad, a)


def _rebin_slice(values: np.ndarray, a: Acquisition, helix: _Helix, z: float) -> np.ndarray:
    """``(N, C)`` fan sinogram of the slice at ``z`` (mm)."""
    rows_mm = a.row_positions_mm
    channels = np.arange(a.n_channels)
    with np.errstate(invalid="ignore"):
        row = ((z - helix.source_z_mm[..., None]) / helix.slope + helix.z_shift_mm[..., None]
               - rows_mm[0]) / a.row_spacing_mm                        # (N, K, C)
        inside = (row >= -_ROW_TOLERANCE) & (row <= a.n_rows - 1 + _ROW_TOLERANCE)
        distance = np.where(inside, np.abs(z - helix.source_z_mm)[..., None], np.inf)
    turn = np.argmin(distance, axis=1)                                  # (N, C)
    spanned = np.isfinite(np.take_along_axis(distance, turn[:, None], axis=1)[:, 0])
    view = np.take_along_axis(helix.views, turn, axis=1)
    position = np.take_along_axis(row, turn[:, None], axis=1)[:, 0]
    lower = np.clip(np.floor(np.nan_to_num(position)), 0, max(a.n_rows - 2, 0)).astype(int)
    upper = np.minimum(lower + 1, a.n_rows - 1)
    weight = np.clip(np.nan_to_num(position) - lower, 0, 1).astype(np.float32)
    result = ((1 - weight) * values[view, lower, channels]
              + weight * values[view, upper, channels])
    if not spanned.all():
        result = np.where(spanned, result, _across_turns(values, a, helix, z))
    return result


def _across_turns(values: np.ndarray, a: Acquisition, helix: _Helix, z: float) -> np.ndarray:
    """``(N, C)`` linear interpolation in z between the last row of the turn below ``z``
    and the first row of the turn above (for rays no single turn spans)."""
    first, last = _row_crossings(helix, a.row_positions_mm)
    below = np.where(last <= z, last, -np.inf)                          # (N, K, C)
    above = np.where(first >= z, first, np.inf)
    turn_below, turn_above = np.argmax(below, axis=1), np.argmin(above, axis=1)
    z_below = np.take_along_axis(below, turn_below[:, None], axis=1)[:, 0]
    z_above = np.take_along_axis(above, turn_above[:, None], axis=1)[:, 0]
    channels = np.arange(a.n_channels)
    value_below = values[np.take_along_axis(helix.views, turn_below, axis=1), -1, channels]
    value_above = values[np.take_along_axis(helix.views, turn_above, axis=1), 0, channels]
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.clip((z - z_below) / (z_above - z_below), 0, 1)
    return ((1 - weight) * value_below + weight * value_above).astype(np.float32)
