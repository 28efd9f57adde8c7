"""Geometric primitives of analytic phantoms: exact chords and point membership.

All coordinates here are in the *phantom frame* (mm): ``x`` to the patient's
left as displayed (image right), ``y`` up on the display (anterior), ``z``
along the rotation axis; see :mod:`ctpnp.phantoms.frame` for the map to the
image frame of :mod:`ctpnp.scanner.geometry`.

Every shape is a convex region: an optional quadric "base" (an ellipse
extruded along ``z``, or an ellipsoid) intersected with any number of
half-spaces :class:`HalfPlane` (``normal · x < offset``). A polygon is a shape
with no base. This single description gives both

* :meth:`Shape.chords`: the exact length (mm) of each ray inside the shape,
  from the parameter interval ``[t_in, t_out]`` of the ray ``p + t d``
  (quadratic solve for the base, one linear bound per half-space), and
* :meth:`Shape.contains`: a point-membership test consistent with it.

Planar shapes (ellipses, polygons) are infinite prisms along ``z``. A ray
parallel to ``z`` would have an infinite or empty chord through them; such
rays get chord 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Ellipse", "Ellipsoid", "HalfPlane", "Polygon", "Rays", "Shape"]

_PARALLEL_TO_Z = 1e-12
"""Rays whose in-plane direction component is below this are treated as parallel to z."""


@dataclass(frozen=True)
class HalfPlane:
    """The open half-space ``normal · x < offset_mm`` (phantom frame).

    Attributes:
        normal: unit normal ``(3,)``; planar clips have ``normal[2] == 0``.
        offset_mm: signed distance of the boundary plane from the origin (mm).
    """

    normal: tuple[float, float, float]
    offset_mm: float

    @classmethod
    def planar(cls, normal_deg: float, offset_mm: float,
               origin_mm: tuple[float, float] = (0.0, 0.0)) -> HalfPlane:
        """``cos(a) (x - x0) + sin(a) (y - y0) < offset_mm`` for ``a = normal_deg``."""
        a = math.radians(normal_deg)
        n = (math.cos(a), math.sin(a))
        return cls((n[0], n[1], 0.0), offset_mm + n[0] * origin_mm[0] + n[1] * origin_mm[1])


@dataclass(frozen=True)
class Rays:
    """A batch of rays ``p + t d`` in the phantom frame, prepared once for all shapes.

    Attributes:
        points_mm: ``(N, 3)`` a point of each ray, moved to the point of the ray
            closest to the origin (keeps the quadratic solves well conditioned).
        directions: ``(N, 3)`` unit directions.
        normals_xy: ``(N, 2)`` unit normal of the ray's projection onto the xy plane.
        offsets_mm: ``(N,)`` signed distance of that projected line from the origin.
        planar_ok: ``(N,)`` False for rays (numerically) parallel to ``z``.
    """

    points_mm: np.ndarray
    directions: np.ndarray
    normals_xy: np.ndarray = field(repr=False)
    offsets_mm: np.ndarray = field(repr=False)
    planar_ok: np.ndarray = field(repr=False)

    @classmethod
    def from_arrays(cls, points_mm: np.ndarray, directions: np.ndarray) -> Rays:
        """Rays from ``(N, 3)`` points and ``(N, 3)`` directions (normalised here)."""
        p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        length = np.linalg.norm(d, axis=1, keepdims=True)
        if np.any(length == 0) or not np.all(np.isfinite(length)):
            raise ValueError("directions: every ray needs a finite, non-zero direction")
        d = d / length
        p = p - np.sum(p * d, axis=1, keepdims=True) * d
        in_plane = np.hypot(d[:, 0], d[:, 1])
        planar_ok = in_plane > _PARALLEL_TO_Z
        safe = np.where(planar_ok, in_plane, 1.0)
        normals = np.stack([np.where(planar_ok, -d[:, 1] / safe, 1.0),
                            np.where(planar_ok, d[:, 0] / safe, 0.0)], axis=1)
        offsets = normals[:, 0] * p[:, 0] + normals[:, 1] * p[:, 1]
        return cls(p, d, normals, offsets, planar_ok)

    def __len__(self) -> int:
        return self.points_mm.shape[0]


@dataclass(frozen=True)
class Shape:
    """A convex region with an additive CT number (see the module docstring).

    Attributes:
        name: label used in error messages and by the anatomy generator.
        hu: CT number added inside the region (HU). Phantoms start from air
            (-1000 HU), so a water body contributes ``+1000``.
        clips: half-spaces the region is intersected with.
    """

    name: str
    hu: float
    clips: tuple[HalfPlane, ...] = ()

    # -- to be provided by subclasses -----------------------------------------
    planar = True
    """True for prisms along z (ellipse, polygon)."""

    def bounding_circle_mm(self) -> tuple[float, float, float]:
        """``(x, y, radius)`` of a circle containing the shape's xy footprint (mm)."""
        raise NotImplementedError

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the xy footprint (mm)."""
        raise NotImplementedError

    def _base_interval(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray parameters ``(t_in, t_out)`` of the base region, ``(n,)`` each."""
        n = p.shape[0]
        return np.full(n, -np.inf), np.full(n, np.inf)

    def _base_contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Membership in the base region of points given by broadcastable coordinates."""
        return np.ones(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=bool)

    # -- shared ----------------------------------------------------------------
    def chords(self, rays: Rays) -> np.ndarray:
        """Length (mm) of each ray inside the shape, ``(N,)`` float64.

        Rays whose xy projection misses the bounding circle are skipped
        without solving anything.
        """
        cx, cy, radius = self.bounding_circle_mm()
        distance = np.abs(rays.offsets_mm - rays.normals_xy[:, 0] * cx
                          - rays.normals_xy[:, 1] * cy)
        candidates = distance < radius
        if self.planar:
            candidates &= rays.planar_ok
        index = np.flatnonzero(candidates)
        out = np.zeros(len(rays))
        if index.size == 0:
            return out
        t_in, t_out = self.intervals(rays.points_mm[index], rays.directions[index])
        out[index] = np.where(t_out > t_in, t_out - t_in, 0.0)
        return out

    def intervals(self, points_mm: np.ndarray, directions: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Ray parameters ``(t_in, t_out)``, ``(n,)`` each, of the rays ``p + t d`` inside
        the shape, for ``(n, 3)`` points (mm) and unit directions; ``t`` is the distance
        (mm) from ``p``. Rays that miss have ``t_out <= t_in``; planar shapes need rays
        that are not parallel to ``z``."""
        t_in, t_out = self._base_interval(points_mm, directions)
        for clip in self.clips:
            t_in, t_out = _clip_interval(clip, points_mm, directions, t_in, t_out)
        return t_in, t_out

    def near(self, x: np.ndarray, y: np.ndarray, margin_mm: float) -> np.ndarray:
        """Whether xy points (mm, broadcastable) may lie within ``margin_mm`` of the shape's
        footprint: True for every point that does (conservative), here its bounding box
        grown by ``margin_mm``."""
        x_min, x_max, y_min, y_max = self.bounding_box_mm()
        return ((x > x_min - margin_mm) & (x < x_max + margin_mm)
                & (y > y_min - margin_mm) & (y < y_max + margin_mm))

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Membership of points (phantom frame, mm) given by broadcastable coordinate
        arrays, e.g. a column of ``y`` and a row of ``x`` → an ``(ny, nx)`` bool grid."""
        inside = self._base_contains(x, y, z)
        for clip in self.clips:
            nx, ny, nz = clip.normal
            side = nx * x + ny * y + (nz * z if nz else 0.0)
            inside = inside & (side < clip.offset_mm)
        return inside


def _clip_interval(clip: HalfPlane, p: np.ndarray, d: np.ndarray,
                   t_in: np.ndarray, t_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersect ``[t_in, t_out]`` with the ray parameters inside ``clip``."""
    n = np.asarray(clip.normal)
    slope = d @ n
    gap = clip.offset_mm - p @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cross = gap / slope
    t_out = np.where(slope > 0, np.minimum(t_out, t_cross), t_out)
    t_in = np.where(slope < 0, np.maximum(t_in, t_cross), t_in)
    outside_parallel = (slope == 0) & (gap <= 0)
    return np.where(outside_parallel, np.inf, t_in), t_out


@dataclass(frozen=True)
class _Quadric(Shape):
    """Rotated, axis-scaled unit disc (extruded along z) or unit ball.

    ``center_mm`` and ``axes_mm`` have 2 entries for an ellipse and 3 for an
    ellipsoid; ``angle_deg`` rotates the first semi-axis counter-clockwise from
    ``+x`` about ``z``.
    """

    center_mm: tuple[float, ...] = (0.0, 0.0)
    axes_mm: tuple[float, ...] = (1.0, 1.0)
    angle_deg: float = 0.0

    def _to_local(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, *,
                  is_direction: bool) -> list[np.ndarray]:
        """Coordinates (broadcastable arrays) in which the base is the unit disc or ball."""
        if not is_direction:
            x, y = x - self.center_mm[0], y - self.center_mm[1]
            if len(self.center_mm) == 3:
                z = z - self.center_mm[2]
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        local = [(c * x + s * y) / self.axes_mm[0], (c * y - s * x) / self.axes_mm[1]]
        if len(self.axes_mm) == 3:
            local.append(z / self.axes_mm[2])
        return local

    def _base_interval(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p_local = self._to_local(*p.T, is_direction=False)
        d_local = self._to_local(*d.T, is_direction=True)
        a = sum(v * v for v in d_local)
        b = sum(u * v for u, v in zip(p_local, d_local, strict=True))
        c = sum(u * u for u in p_local) - 1.0
        disc = b * b - a * c
        hit = (disc > 0) & (a > 0)
        root = np.sqrt(np.where(hit, disc, 0.0))
        a_safe = np.where(hit, a, 1.0)
        t_in = np.where(hit, (-b - root) / a_safe, np.inf)
        t_out = np.where(hit, (-b + root) / a_safe, -np.inf)
        return t_in, t_out

    def _base_contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return sum(u * u for u in self._to_local(x, y, z, is_direction=False)) <= 1.0

    def _half_extents_xy(self) -> tuple[float, float]:
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        ax, ay = self.axes_mm[0], self.axes_mm[1]
        return math.hypot(ax * c, ay * s), math.hypot(ax * s, ay * c)

    def bounding_circle_mm(self) -> tuple[float, float, float]:
        return self.center_mm[0], self.center_mm[1], max(self.axes_mm[:2])

    def near(self, x: np.ndarray, y: np.ndarray, margin_mm: float) -> np.ndarray:
        """Within the box test and the ellipse grown by ``margin_mm / min(a, b)`` in its unit
        coordinates (a point ``margin_mm`` from the ellipse is that far from the unit disc)."""
        u, v = self._to_local(x, y, 0.0, is_direction=False)[:2]
        grown = 1.0 + margin_mm / min(self.axes_mm[:2])
        return super().near(x, y, margin_mm) & (u * u + v * v < grown * grown)

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        hx, hy = self._half_extents_xy()
        x, y = self.center_mm[0], self.center_mm[1]
        return x - hx, x + hx, y - hy, y + hy


@dataclass(frozen=True)
class Ellipse(_Quadric):
    """Ellipse in the xy plane, extruded along z: ``center_mm (x, y)``, ``axes_mm (a, b)``."""


@dataclass(frozen=True)
class Ellipsoid(_Quadric):
    """Ellipsoid: ``center_mm (x, y, z)``, semi-axes ``axes_mm (a, b, c)``, rotated about z."""

    planar = False


@dataclass(frozen=True)
class Polygon(Shape):
    """Convex polygon in the xy plane, extruded along z.

    Build it with :meth:`from_vertices`; the edges become half-planes stored
    first in :attr:`clips`.

    Attributes:
        vertices_mm: ``((x, y), ...)`` counter-clockwise.
    """

    vertices_mm: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_vertices(cls, name: str, hu: float, vertices_mm: np.ndarray,
                      clips: tuple[HalfPlane, ...] = ()) -> Polygon:
        """A convex polygon from ``(n, 2)`` vertices in either orientation.

        Raises:
            ValueError: fewer than 3 vertices, repeated vertices, or not convex.
        """
        v = np.asarray(vertices_mm, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] < 3 or v.shape[1] != 2:
            raise ValueError(f"{name}: a polygon needs at least 3 (x, y) vertices, "
                             f"got an array of shape {v.shape}")
        edges = np.roll(v, -1, axis=0) - v
        turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] \
            - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
        if np.any(np.linalg.norm(edges, axis=1) == 0):
            raise ValueError(f"{name}: polygon has repeated consecutive vertices")
        if not (np.all(turns > 0) or np.all(turns < 0)):
            raise ValueError(f"{name}: polygon must be convex with no collinear vertices")
        if turns[0] < 0:
            v = v[::-1]
            edges = np.roll(v, -1, axis=0) - v
        # counter-clockwise: the interior is on the left of each edge, outward normal (ey, -ex)
        normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        edge_planes = tuple(
            HalfPlane((float(nx), float(ny), 0.0), float(nx * x + ny * y))
            for (nx, ny), (x, y) in zip(normals, v, strict=True)
        )
        return cls(name, hu, edge_planes + tuple(clips),
                   tuple((float(x), float(y)) for x, y in v))

    def bounding_circle_mm(self) -> tuple[float, float, float]:
        v = np.asarray(self.vertices_mm)
        centre = v.mean(axis=0)
        return float(centre[0]), float(centre[1]), float(np.linalg.norm(v - centre, axis=1).max())

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        v = np.asarray(self.vertices_mm)
        return float(v[:, 0].min()), float(v[:, 0].max()), float(v[:, 1].min()), \
            float(v[:, 1].max())
