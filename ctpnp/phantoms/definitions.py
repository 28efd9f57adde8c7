"""Phantom definitions as data: YAML files → validated :class:`Phantom` objects.

A definition file (shipped ones live in the top-level ``phantoms/`` folder)::

    name: water_inserts
    description: free text
    unit_mm: 1.0          # length unit of every number below, in mm (10 for cm)
    shapes:
      - {name: water, type: circle, center: [0, 0], radius: 100, hu: 1000}
      - {name: bone, type: ellipse, center: [0, 50], axes: [10, 5], angle_deg: 30, hu: 780}

Every shape needs ``type`` and ``hu``; ``name`` defaults to ``"<type><index>"``.
CT numbers are additive on an air background (-1000 HU), so a water body has
``hu: 1000`` and an insert inside it adds its contrast to water. Types and
their fields (lengths in ``unit_mm``, angles in degrees counter-clockwise from
``+x``, phantom frame of :mod:`ctpnp.phantoms.frame`):

* ``ellipse``: ``center [x, y]``, semi-axes ``axes [a, b]``, ``angle_deg`` (0);
  extruded along z.
* ``circle``: ``center [x, y]``, ``radius``.
* ``ellipsoid``: ``center [x, y, z]``, ``axes [a, b, c]``, ``angle_deg`` (about z).
* ``rectangle``: ``center [x, y]``, full ``size [width, height]``, ``angle_deg``.
* ``polygon``: convex, ``vertices [[x, y], ...]``.
* ``bar_group``: a line-pair pattern of ``bars`` (5) rectangles of width
  ``5 / lp_per_cm`` mm and length ``length``, spaced one period apart along
  the direction ``angle_deg`` (the profile across the bars runs along it),
  centred on ``center``.

Any shape may carry ``clip: [{normal_deg: a, offset: d}, ...]``, keeping only
points with ``cos(a) (x - x0) + sin(a) (y - y0) < d`` where ``(x0, y0)`` is
the shape's ``center`` (the origin for polygons), as in the FORBILD head.

Malformed definitions raise ``ValueError`` naming the phantom and the item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ctpnp.phantoms.phantom import Phantom
from ctpnp.phantoms.shapes import Ellipse, Ellipsoid, HalfPlane, Polygon, Shape

__all__ = ["available", "from_mapping", "load"]

_COMMON = {"name", "type", "hu", "clip"}
_FIELDS: dict[str, set[str]] = {
    "ellipse": {"center", "axes", "angle_deg"},
    "circle": {"center", "radius"},
    "ellipsoid": {"center", "axes", "angle_deg"},
    "rectangle": {"center", "size", "angle_deg"},
    "polygon": {"vertices"},
    "bar_group": {"center", "lp_per_cm", "bars", "length", "angle_deg"},
}
_OPTIONAL = {"angle_deg", "bars", "clip", "name"}


def _definitions_dir() -> Path:
    return Path(str(resources.files("ctpnp.phantoms") / "definitions"))


def available() -> list[str]:
    """Names of the shipped phantom definitions, sorted."""
    return sorted(p.stem for p in _definitions_dir().glob("*.yaml"))


def load(name: str | Path, *, scale: float = 1.0) -> Phantom:
    """A shipped phantom by name (see :func:`available`) or a YAML file by path.

    ``scale`` multiplies every length (the definition's ``unit_mm``), e.g. to fit
    a 200 mm phantom into a smaller field of view; CT numbers are unchanged.

    Raises:
        ValueError: unknown name, a non-positive ``scale``, or a malformed
            definition (naming the item).
    """
    if not scale > 0:
        raise ValueError(f"scale={scale} must be positive")
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = _definitions_dir() / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown phantom {name!r}: expected one of {available()} "
                             "or the path of a .yaml file")
    with path.open(encoding="utf-8") as stream:
        data = yaml.safe_load(stream)
    if scale != 1.0 and isinstance(data, Mapping):
        data = {**data, "unit_mm": _number(data.get("unit_mm", 1.0), f"{path}: unit_mm") * scale}
    return from_mapping(data, source=str(path))


def from_mapping(data: Any, source: str = "<mapping>") -> Phantom:
    """Validate a parsed definition (the YAML structure above) and build the phantom."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: a phantom definition must be a mapping")
    unknown = set(data) - {"name", "description", "unit_mm", "shapes"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: missing 'name'")
    unit = _number(data.get("unit_mm", 1.0), f"{name}: unit_mm")
    if unit <= 0:
        raise ValueError(f"{name}: unit_mm={unit} must be positive")
    items = data.get("shapes")
    if not isinstance(items, list) or not items:
        raise ValueError(f"{name}: 'shapes' must be a non-empty list")
    shapes: list[Shape] = []
    for index, item in enumerate(items):
        shapes.extend(_shapes_of(item, index, name, unit))
    return Phantom(name, tuple(shapes), str(data.get("description", "")).strip())


def _shapes_of(item: Any, index: int, phantom: str, unit: float) -> list[Shape]:
    """One definition item → shapes in mm (a bar group gives several)."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{phantom}: shapes[{index}] must be a mapping, got {item!r}")
    kind = item.get("type")
    label = str(item.get("name", f"{kind}{index}"))
    where = f"{phantom}: shapes[{index}] ({label!r})"
    if kind not in _FIELDS:
        raise ValueError(f"{where}: unknown type {kind!r}, expected one of {sorted(_FIELDS)}")
    allowed = _COMMON | _FIELDS[kind]
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} for type {kind!r}")
    missing = sorted(allowed - _OPTIONAL - set(item))
    if missing:
        raise ValueError(f"{where}: missing {', '.join(repr(m) for m in missing)}")
    hu = _number(item["hu"], f"{where}: hu")
    angle = _number(item.get("angle_deg", 0.0), f"{where}: angle_deg")

    def lengths(key: str, count: int, positive: bool) -> tuple[float, ...]:
        values = _vector(item[key], count, f"{where}: {key}")
        if positive and min(values) <= 0:
            raise ValueError(f"{where}: {key} must be positive, got {list(values)}")
        return tuple(unit * v for v in values)

    center = lengths("center", 3 if kind == "ellipsoid" else 2, False) \
        if "center" in item else (0.0, 0.0)
    clips = _clips(item.get("clip", []), center, unit, where)
    if kind in ("ellipse", "ellipsoid"):
        cls = Ellipse if kind == "ellipse" else Ellipsoid
        axes = lengths("axes", 3 if kind == "ellipsoid" else 2, True)
        return [cls(label, hu, clips, center, axes, angle)]
    if kind == "circle":
        radius = lengths("radius", 1, True)[0]
        return [Ellipse(label, hu, clips, center, (radius, radius), 0.0)]
    if kind == "polygon":
        vertices = item["vertices"]
        if not isinstance(vertices, list):
            raise ValueError(f"{where}: vertices must be a list of [x, y] pairs")
        points = np.array([_vector(v, 2, f"{where}: vertices") for v in vertices]) * unit
        try:
            return [Polygon.from_vertices(label, hu, points, clips)]
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if kind == "rectangle":
        return [_rectangle(label, hu, center, lengths("size", 2, True), angle, clips)]
    # bar_group
    lp_per_cm = _number(item["lp_per_cm"], f"{where}: lp_per_cm")
    bars = item.get("bars", 5)
    if lp_per_cm <= 0 or not isinstance(bars, int) or bars < 1:
        raise ValueError(f"{where}: lp_per_cm must be positive and bars a positive integer, "
                         f"got {lp_per_cm} and {bars!r}")
    period = 10.0 / lp_per_cm
    length = lengths("length", 1, True)[0]
    u = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    return [
        _rectangle(f"{label}/bar{k}", hu,
                   tuple(np.asarray(center) + (k - (bars - 1) / 2) * period * u),
                   (period / 2, length), angle, clips)
        for k in range(bars)
    ]


def _rectangle(name: str, hu: float, center: tuple[float, ...], size: tuple[float, ...],
               angle_deg: float, clips: tuple[HalfPlane, ...]) -> Polygon:
    a = math.radians(angle_deg)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    half = 0.5 * np.array([[-size[0], -size[1]], [size[0], -size[1]],
                           [size[0], size[1]], [-size[0], size[1]]])
    return Polygon.from_vertices(name, hu, half @ rotation.T + np.asarray(center), clips)


def _clips(entries: Any, center: tuple[float, ...], unit: float,
           where: str) -> tuple[HalfPlane, ...]:
    if not isinstance(entries, list):
        raise ValueError(f"{where}: clip must be a list of {{normal_deg, offset}} mappings")
    clips = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or set(entry) != {"normal_deg", "offset"}:
            raise ValueError(f"{where}: clip[{k}] must be a mapping with exactly the keys "
                             f"'normal_deg' and 'offset', got {entry!r}")
        clips.append(HalfPlane.planar(_number(entry["normal_deg"], f"{where}: clip[{k}]"),
                                      unit * _number(entry["offset"], f"{where}: clip[{k}]"),
                                      (center[0], center[1])))
    return tuple(clips)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _vector(value: Any, count: int, what: str) -> tuple[float, ...]:
    if count == 1 and not isinstance(value, list):
        value = [value]
    if not isinstance(value, list) or len(value) != count:
        raise ValueError(f"{what} must be a list of {count} numbers, got {value!r}")
    return tuple(_number(v, what) for v in value)
