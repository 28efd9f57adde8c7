"""Gaussian-lump textures confined to a region of a phantom, with exact line integrals.

A :class:`LumpTexture` adds to the CT number inside its region
``R = host minus (hole_1 ∪ ... ∪ hole_k)`` the field

    ``f(x, y) = sum_j a_j exp(-((x - cx_j)^2 + (y - cy_j)^2) / (2 sigma^2))``  (HU)

and nothing outside ``R``; like the planar shapes it is extruded along ``z``.
The holes must be disjoint and lie inside the host (all convex shapes): a ray
then meets ``R`` in its host interval minus its hole intervals, and the
integral of one lump along a piece ``[t0, t1]`` of the ray ``p + t d`` (``t``
in mm along the unit direction ``d``) is, exactly,

    ``a exp(-r^2 / (2 sigma^2)) sigma sqrt(pi / 2) / q
    * [erf(q (t1 - t*) / (sigma sqrt 2)) - erf(q (t0 - t*) / (sigma sqrt 2))]``

with ``r`` the in-plane distance of the lump centre from the ray, ``q`` the
length of the in-plane part of ``d`` and ``t*`` the parameter of the ray's
point nearest the centre. Lump-ray pairs with ``r > 5 sigma`` are skipped:
each would add at most ``exp(-12.5) ≈ 4e-6`` of the lump's full line
integral (about ``1e-3 HU mm`` for the textures of
:func:`~ctpnp.phantoms.random_anatomy`, against the ``~1e5 HU mm`` of a ray
through a body: ``1e-8`` relative, below float32 resolution). So the texture
is confined to its tissue, and its line integrals, :func:`texture_hu` at
points and :func:`rasterize_textures` describe one and the same field.

Statistics (:func:`lumpy_texture`): centres form a uniform random point set of
density ``rho`` (1/mm²), amplitudes are ``N(0, A^2)``. Away from the region's
border the field has mean 0 (the tissue keeps its CT number on average),
variance ``rho A^2 pi sigma^2`` and autocorrelation ``exp(-d^2 / (4 sigma^2))``,
whose half width at half maximum, the *grain* ``2 sqrt(ln 2) sigma ≈ 1.67 sigma``,
is what :func:`ctpnp.data.texture.tissue_statistics` reports as ``corr_mm``.

Cost: projection visits every lump-ray pair within reach, about
``1.3 L / sigma`` pairs for a chord of length ``L`` through a texture at the
default density (a few hundred per ray through a body at ``sigma = 1.5 mm``),
each a few tens of numpy operations: a 1152-view, 736-channel fan sinogram of
the textured :func:`~ctpnp.phantoms.random_anatomy` takes about 18 s on one
CPU core, 25-45 times the flat phantom's. Rasters evaluate each lump as an
outer product over its window (0.35 s for 512² with 4x4 supersampling, 7x).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.special import erf

from ctpnp.phantoms.raster import pixel_means, subpixel_blocks
from ctpnp.phantoms.shapes import Rays, Shape
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["HWHM_PER_SIGMA", "LUMPS_PER_SIGMA_DISC", "LumpTexture", "lumpy_texture",
           "rasterize_textures", "texture_hu", "texture_line_integrals"]

REACH_SIGMAS = 5.0
"""Rays are paired with lumps within this many ``sigma`` (``exp(-12.5) ≈ 3.7e-6``)."""

LUMPS_PER_SIGMA_DISC = 0.4
"""Mean number of lump centres within ``sigma`` of a point, ``rho pi sigma^2``: about ten
lumps overlap any point within reach; fewer make a coarser, blobbier texture."""

HWHM_PER_SIGMA = 2 * math.sqrt(math.log(2))
"""Half width at half maximum of the autocorrelation ``exp(-d^2 / (4 sigma^2))``, per sigma."""

_POINTS_PER_CHUNK = 1 << 10
"""Points evaluated against all lumps at once by :func:`texture_hu`."""
_RAYS_PER_CHUNK = 1 << 9
"""Rays paired with their lumps together: keeps the pair arrays within the CPU caches."""


@dataclass(frozen=True)
class LumpTexture:
    """Gaussian lumps added inside ``host`` minus ``holes`` (phantom frame, mm).

    Attributes:
        name: label, e.g. ``"liver_texture"``.
        host: the convex shape the texture lives in.
        holes: disjoint shapes inside ``host`` where the texture is absent.
        sigma_mm: width (standard deviation) of every lump (mm).
        std_hu: the field's design standard deviation (HU), see :func:`lumpy_texture`.
        centers_mm: ``((x, y), ...)`` lump centres.
        amplitudes_hu: peak CT number of each lump (HU, either sign).
    """

    name: str
    host: Shape
    holes: tuple[Shape, ...]
    sigma_mm: float
    std_hu: float
    centers_mm: tuple[tuple[float, float], ...] = field(repr=False)
    amplitudes_hu: tuple[float, ...] = field(repr=False)

    @cached_property
    def _centers(self) -> np.ndarray:
        return np.asarray(self.centers_mm, dtype=np.float64).reshape(-1, 2)

    @cached_property
    def _amplitudes(self) -> np.ndarray:
        return np.asarray(self.amplitudes_hu, dtype=np.float64)

    @cached_property
    def near_holes(self) -> tuple[np.ndarray, ...]:
        """Per hole, ``(n_lumps,)`` bool: lumps that may lie within ``REACH_SIGMAS sigma`` of
        the hole (:meth:`Shape.near`); only they need the hole's interval."""
        reach = REACH_SIGMAS * self.sigma_mm
        return tuple(hole.near(self._centers[:, 0], self._centers[:, 1], reach)
                     for hole in self.holes)

    def region_contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Membership of broadcastable points (mm) in ``host`` minus ``holes``."""
        inside = self.host.contains(x, y, z)
        for hole in self.holes:
            inside = inside & ~hole.contains(x, y, z)
        return inside


def lumpy_texture(rng: np.random.Generator, name: str, host: Shape, holes: tuple[Shape, ...],
                  *, std_hu: float, grain_mm: float) -> LumpTexture:
    """Draw a stationary lumpy texture of standard deviation ``std_hu`` (HU) and grain
    ``grain_mm`` (half width at half maximum of its autocorrelation, mm).

    Lump centres are uniform (Poisson count) over the host's bounding box grown by
    ``3 sigma``, :data:`LUMPS_PER_SIGMA_DISC` per ``pi sigma^2``; a lump is dropped
    when neither its centre nor any of 8 points ``3 sigma`` around it lies in the
    region (such a lump would add about 1 % of its peak there at most). Amplitudes
    are ``N(0, A^2)`` with ``A = std_hu / sqrt(rho pi sigma^2)``.
    """
    if not (std_hu >= 0 and grain_mm > 0):
        raise ValueError(f"{name}: std_hu={std_hu!r} must be >= 0 and "
                         f"grain_mm={grain_mm!r} > 0")
    sigma = grain_mm / HWHM_PER_SIGMA
    density = LUMPS_PER_SIGMA_DISC / (math.pi * sigma ** 2)
    amplitude = std_hu / math.sqrt(LUMPS_PER_SIGMA_DISC)
    x_min, x_max, y_min, y_max = host.bounding_box_mm()
    margin = 3 * sigma
    x_min, x_max, y_min, y_max = x_min - margin, x_max + margin, y_min - margin, y_max + margin
    n = rng.poisson(density * (x_max - x_min) * (y_max - y_min))
    centers = np.column_stack([rng.uniform(x_min, x_max, n), rng.uniform(y_min, y_max, n)])
    amplitudes = rng.normal(0.0, amplitude, n)
    texture = LumpTexture(name, host, holes, sigma, std_hu, (), ())
    steps = margin * np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1],
                               [0.7, 0.7], [0.7, -0.7], [-0.7, 0.7], [-0.7, -0.7]])
    stencil = centers[:, None, :] + steps[None]
    keep = texture.region_contains(stencil[..., 0], stencil[..., 1], 0.0).any(axis=1)
    return LumpTexture(name, host, holes, sigma, std_hu,
                       tuple(map(tuple, centers[keep].tolist())),
                       tuple(amplitudes[keep].tolist()))


def texture_hu(textures: tuple[LumpTexture, ...], x: np.ndarray, y: np.ndarray,
               z: np.ndarray) -> np.ndarray:
    """Sum of the textures' CT numbers (HU) at ``(P,)`` points (phantom frame, mm) → ``(P,)``."""
    x, y, z = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
    out = np.zeros(x.shape)
    for texture in textures:
        index = np.flatnonzero(texture.region_contains(x, y, z))
        c, a = texture._centers, texture._amplitudes
        for first in range(0, index.size, _POINTS_PER_CHUNK):
            chunk = index[first:first + _POINTS_PER_CHUNK]
            d2 = (x[chunk, None] - c[:, 0]) ** 2 + (y[chunk, None] - c[:, 1]) ** 2
            out[chunk] += np.exp(-d2 / (2 * texture.sigma_mm ** 2)) @ a
    return out


def rasterize_textures(textures: tuple[LumpTexture, ...], geometry: ScanGeometry,
                       supersample: int, z_mm: float = 0.0) -> np.ndarray:
    """``(H, W)`` float64 CT numbers (HU) of the textures alone, each pixel the mean over
    ``supersample × supersample`` sub-points (as :func:`ctpnp.phantoms.raster.rasterize_hu`)."""
    s = int(supersample)
    image = np.zeros(geometry.image_shape)
    for texture in textures:
        for rows, cols, (x, y, z) in subpixel_blocks(texture.host.bounding_box_mm(), geometry,
                                                     s, z_mm):
            field_hu = _lump_field(texture, y[:, 0], x[0, :]) * _region_grid(texture, x, y, z)
            image[rows, cols] += pixel_means(field_hu, s)
    return image


def _region_grid(texture: LumpTexture, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    """``texture.region_contains`` on the grid of an increasing ``(1, nx)`` row ``x`` and a
    decreasing ``(ny, 1)`` column ``y``, testing each hole only inside its bounding box
    (grown by a nanometre against rounding)."""
    inside = texture.host.contains(x, y, z)
    for hole in texture.holes:
        x_min, x_max, y_min, y_max = hole.bounding_box_mm()
        i0, i1 = np.searchsorted(-y[:, 0], [-y_max - 1e-6, -y_min + 1e-6])
        j0, j1 = np.searchsorted(x[0], [x_min - 1e-6, x_max + 1e-6])
        if i1 > i0 and j1 > j0:
            inside[i0:i1, j0:j1] &= ~hole.contains(x[:, j0:j1], y[i0:i1], z)
    return inside


def _lump_field(texture: LumpTexture, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(len(y), len(x))`` field of all lumps on the grid of sorted ``x`` and descending ``y``,
    each lump evaluated as an outer product over its ``REACH_SIGMAS`` window."""
    out = np.zeros((y.size, x.size))
    reach = REACH_SIGMAS * texture.sigma_mm
    two_var = 2 * texture.sigma_mm ** 2
    c = texture._centers
    row_first = np.searchsorted(-y, -c[:, 1] - reach)
    row_last = np.searchsorted(-y, -c[:, 1] + reach)
    col_first = np.searchsorted(x, c[:, 0] - reach)
    col_last = np.searchsorted(x, c[:, 0] + reach)
    hits = np.flatnonzero((row_last > row_first) & (col_last > col_first))
    for j in hits:
        i0, i1, j0, j1 = row_first[j], row_last[j], col_first[j], col_last[j]
        gy = np.exp(-(y[i0:i1] - c[j, 1]) ** 2 / two_var)
        gx = np.exp(-(x[j0:j1] - c[j, 0]) ** 2 / two_var)
        out[i0:i1, j0:j1] += texture._amplitudes[j] * np.outer(gy, gx)
    return out


def texture_line_integrals(textures: tuple[LumpTexture, ...], rays: Rays) -> np.ndarray:
    """Exact integrals (HU · mm) of the textures' CT numbers along ``rays`` → ``(N,)``.

    Rays parallel to ``z`` get 0, like the planar shapes.
    """
    out = np.zeros(len(rays))
    for texture in textures:
        out += _line_integrals(texture, rays)
    return out


def _line_integrals(texture: LumpTexture, rays: Rays) -> np.ndarray:
    """``(N,)`` integrals (HU · mm) of one texture: its lumps along each ray's host
    interval, minus the lumps near each hole along the ray's interval in that hole."""
    out = np.zeros(len(rays))
    if not texture.amplitudes_hu:
        return out
    index, t_in, t_out = _intervals(texture.host, rays, np.flatnonzero(rays.planar_ok))
    every = np.arange(len(texture.amplitudes_hu))
    out[index] += _interval_integrals(texture, every, rays, index, t_in, t_out)
    for hole, near in zip(texture.holes, texture.near_holes, strict=True):
        lumps = np.flatnonzero(near)
        hit, hole_in, hole_out = _intervals(hole, rays, index)
        if lumps.size and hit.size:
            out[hit] -= _interval_integrals(texture, lumps, rays, hit, hole_in, hole_out)
    return out


def _interval_integrals(texture: LumpTexture, lumps: np.ndarray, rays: Rays, index: np.ndarray,
                        t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """``(index.size,)`` integrals (HU · mm) of the lumps ``lumps`` of ``texture`` along the
    pieces ``[t_in, t_out]`` of the rays ``index``.

    Rays are taken in chunks of neighbouring xy normal angles, so that a chunk's
    lumps are found by :func:`_near_pairs` with little slack. Lengths are scaled by
    ``1 / (sigma sqrt 2)`` first: a lump at scaled distance ``e`` from the ray, whose
    nearest point is at scaled ``s*``, gives ``a exp(-e^2) w [erf(u_out - s*) -
    erf(u_in - s*)]`` with ``w = sigma sqrt(pi / 2) / q``.
    """
    unit = texture.sigma_mm * math.sqrt(2)
    centers, amplitudes = texture._centers[lumps], texture._amplitudes[lumps]
    normals, offsets = rays.normals_xy[index], rays.offsets_mm[index]
    angle = np.arctan2(normals[:, 1], normals[:, 0])
    flip = angle < 0
    angle = np.where(flip, angle + math.pi, angle)
    line_offset = np.where(flip, -offsets, offsets)
    d = rays.directions[index]
    q = np.hypot(d[:, 0], d[:, 1])
    # s* = (c - p) . d_xy / q^2 (the ray's in-plane point nearest c), times q / unit
    along = d[:, :2] / (q * unit)[:, None]
    per_ray = np.stack([normals[:, 0] / unit, normals[:, 1] / unit, offsets / unit,
                        along[:, 0], along[:, 1], np.sum(rays.points_mm[index, :2] * along, axis=1),
                        t_in * q / unit, t_out * q / unit,
                        texture.sigma_mm * math.sqrt(math.pi / 2) / q])
    per_lump = np.stack([centers[:, 0], centers[:, 1], amplitudes])
    order = np.argsort(angle, kind="stable")
    out = np.zeros(index.size)
    for first in range(0, index.size, _RAYS_PER_CHUNK):
        chunk = order[first:first + _RAYS_PER_CHUNK]
        local, lump = _near_pairs(angle[chunk], line_offset[chunk], centers,
                                  REACH_SIGMAS * texture.sigma_mm)
        nx, ny, off, ax, ay, base, u_in, u_out, w = per_ray[:, chunk][:, local]
        cx, cy, amplitude = per_lump[:, lump]
        s_star = cx * ax + cy * ay - base
        span = _erf_span(u_in - s_star, u_out - s_star)
        e = cx * nx + cy * ny - off
        out[chunk] = np.bincount(local, weights=amplitude * np.exp(-e * e) * w * span,
                                 minlength=chunk.size)
    return out


_ERF_SATURATED = 4.5
"""``|erf(x)| = 1`` to ``2e-10`` beyond this argument: such ends of a span need no erf."""


def _erf_span(x_in: np.ndarray, x_out: np.ndarray) -> np.ndarray:
    """``erf(x_out) - erf(x_in)``, exactly 2 where both ends saturate."""
    span = np.full(x_in.size, 2.0)
    part = np.flatnonzero((x_in > -_ERF_SATURATED) | (x_out < _ERF_SATURATED))
    span[part] = erf(x_out[part]) - erf(x_in[part])
    return span


def _intervals(shape: Shape, rays: Rays, index: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(index', t_in, t_out)``: the rays of ``index`` (sorted) that cross ``shape``, and
    their parameter intervals inside it. Rays missing its bounding circle are skipped."""
    cx, cy, radius = shape.bounding_circle_mm()
    normals = rays.normals_xy[index]
    near = np.abs(rays.offsets_mm[index] - normals[:, 0] * cx - normals[:, 1] * cy) < radius
    index = index[near]
    t_in, t_out = shape.intervals(rays.points_mm[index], rays.directions[index])
    crossing = t_out > t_in
    return index[crossing], t_in[crossing], t_out[crossing]


def _near_pairs(angle: np.ndarray, offset_mm: np.ndarray, centers: np.ndarray,
                reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(ray, lump)`` of lines and lump centres within ``reach_mm`` of them (and a
    few up to ``1.25 reach_mm``: the angular slack of a bin).

    Lines are ``cos(angle) x + sin(angle) y = offset_mm`` with ``angle`` sorted
    ascending. They are cut into bins of angles narrow enough that turning the
    normal across half a bin moves no centre's projection by more than
    ``reach_mm / 4``, and sorted by offset within a bin, so each lump finds its
    lines with two binary searches per bin.
    """
    radius = np.hypot(centers[:, 0], centers[:, 1])
    width = reach_mm / (2 * max(float(radius.max()), reach_mm))
    bins = ((angle - angle[0]) / width).astype(np.int64)
    order = np.lexsort((offset_mm, bins))
    sorted_offset = offset_mm[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(bins)) + 1, [angle.size]])
    ray_parts, lump_parts = [], []
    for lo, hi in itertools.pairwise(starts):
        middle, half = (angle[hi - 1] + angle[lo]) / 2, (angle[hi - 1] - angle[lo]) / 2
        # turning the normal by up to ``half`` moves a centre's projection by up to |c| half
        slack = reach_mm + radius * half
        projection = centers[:, 0] * math.cos(middle) + centers[:, 1] * math.sin(middle)
        segment = sorted_offset[lo:hi]
        first = np.searchsorted(segment, projection - slack)
        counts = np.searchsorted(segment, projection + slack) - first
        total = int(counts.sum())
        if total == 0:
            continue
        position = np.arange(total) - np.repeat(np.cumsum(counts) - counts - first, counts)
        ray_parts.append(order[lo + position])
        lump_parts.append(np.repeat(np.arange(counts.size), counts))
    if not ray_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ray_parts), np.concatenate(lump_parts)
