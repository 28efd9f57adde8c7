"""Seeded random abdominal slices for training priors and building validation sets.

``random_anatomy(seed)`` draws every parameter from ``numpy.random.default_rng(seed)``,
so the same seed (and arguments) always gives the same phantom, and different
seeds give different anatomies. Structures are placed by rejection sampling so
that they stay inside their host and never overlap each other (2 mm apart,
lesions and liver vessels 1.5 mm); CT numbers are therefore exactly the values
drawn below wherever a structure is.

Statistics (``U(a, b)`` uniform, ``U{m..n}`` uniform integer; ``F = fov_mm``,
lengths in mm, CT numbers in HU; ``A, B`` are the semi-axes of the soft-tissue
region inside the fat layer; the patient's right is on the image left):

==================  ================================================================
structure           distribution
==================  ================================================================
body outline        ellipse, width ``U(0.70, 0.92) F``, depth ``U(0.62, 0.80)`` × width,
                    centre shifted ``U(-0.03, 0.03) F`` per axis, flat back (table
                    side) cut at 0.92 of the half-depth
subcutaneous fat    thickness ``U(8, 25)``, ``U(-120, -80)`` HU
soft tissue         ``U(35, 55)`` HU (muscle and abdominal cavity)
vertebra            body radius ``U(14, 20)`` (depth 0.85×), cortex ``U(1.5, 3)`` thick at
                    ``U(700, 1100)`` HU, cancellous ``U(150, 300)`` HU; arch around a
                    spinal canal of radius ``U(6, 8)`` at ``U(0, 20)`` HU; spinous process
ribs                ``U{6..12}``, semi-axes ``U(5, 9)`` × ``U(3, 5)`` along the outline,
                    ``U(500, 900)`` HU each
aorta, IVC          aorta radius ``U(9, 14)`` at ``U(120, 300)`` HU; IVC semi-axes
                    ``U(9, 13)`` × ``U(6, 9)`` at ``U(80, 200)`` HU
liver               patient's right, semi-axes ``U(0.3, 0.45) A`` × ``U(0.4, 0.6) B``,
                    tilt ``U(-20, 20)`` deg, ``U(50, 70)`` HU
spleen              patient's left, ``U(0.12, 0.2) A`` × ``U(0.2, 0.35) B``, ``U(40, 55)`` HU
kidneys             two, ``U(20, 30)`` × ``U(14, 22)``, ``U(25, 180)`` HU (unenhanced to
                    nephrographic phase)
bowel loops         ``U{2..5}``, ``U(12, 30)`` × ``U(10, 25)``, ``U(10, 40)`` HU, each with a
                    gas pocket (-1000 HU, radius ``U(0.3, 0.6)`` × its short axis) with
                    probability 1/2
liver vessels       ``U{3..8}`` discs of radius ``U(2, 5)`` at ``U(100, 250)`` HU
lesions             ``U{n_lesions}`` discs in the liver, radius ``U(*lesion_radius_mm)``,
                    contrast to the liver ``±U(*lesion_contrast_hu)`` (sign 50/50)
==================  ================================================================

Structures other than the body, fat layer and spine are dropped when no free
spot is found in 200 draws (2000 for lesions). Over seeds 0-99 with the
defaults: liver, spleen and aorta are always present, the left kidney in 81 %,
the IVC in 33 % and the right kidney in 27 % of slices (the liver often takes
their place); slices hold on average 8.9 ribs (9 drawn), 2.9 bowel loops
(3.5 drawn) and 5.4 liver vessels (5.5 drawn), and every drawn lesion was
placed. Every shape has a ``name`` (``"liver"``, ``"lesion0"``, ...); a
lesion's ``hu`` is its contrast to the liver.

Texture (``texture=True``, the default): real tissue is not piecewise
constant, so each soft tissue and the cancellous bone get a zero-mean lumpy
texture (:func:`ctpnp.phantoms.texture.lumpy_texture`: Gaussian lumps with
``N(0, A^2)`` amplitudes, confined to their region with exact line
integrals). Regions: the fat layer (body minus the soft-tissue region), the
soft tissue minus every organ, vessel, rib and the spine, the liver minus its
vessels (lesions keep the liver's texture), the spleen, each kidney, each
bowel loop minus its gas, and the vertebra's cancellous bone. Blood (aorta,
IVC, liver vessels), cortical bone, CSF and gas stay flat. Textures draw from
their own stream ``default_rng([seed, 0x7E47])``, so ``texture=False`` gives
exactly the same shapes (the phantoms of earlier versions) without them. Each
phantom scales every tissue's standard deviation by its own ``U(0.75, 1.25)``.

The standard deviations are those measured on the real training patients
(lung1 chest, cranium head, liver abdomen; never lung2 or the pydicom heads)
by :func:`ctpnp.data.texture.tissue_statistics` (residual after a 2 mm
Gaussian local mean; grain = half width at half maximum of its
autocorrelation), pooled over patients weighted by pixel count; liver
parenchyma and cancellous bone with that function's estimator on the HU
classes ``[30, 90)`` (liver patient) and ``[100, 450)`` (lung1 and cranium;
in the liver patient that class is contrast-enhanced soft tissue, not bone):

===============  =====================  ==============  ===========  =================
tissue           measured std (HU)      measured grain  phantom std  phantom grain
                 lung1/cranium/liver    (mm)            (HU)         (mm, lump sigma)
===============  =====================  ==============  ===========  =================
fat              9.2 / 12.0 / 13.2      0.92-1.14       9.8          2.5 (1.5)
soft tissue      9.0 / 8.1 / 14.0       0.81-1.04       9.3          2.5 (1.5)
liver            - / - / 11.1           0.87            11.1         2.5 (1.5)
cancellous bone  51.9 / 50.9 / -        1.05-1.07       51.8         1.25 (0.75)
lung             40.2 / 87.9 / 63.4     0.94-2.81       (no lung in these slices)
===============  =====================  ==============  ===========  =================

The measured grain, 1.5-2 pixels of the 0.57-1.5 mm data, is mostly the
scanners' noise grain and includes their noise in the std; the soft tissues'
lumps are wider (grain 2.5 mm) so that exact projection stays affordable (its
cost grows as the inverse grain, see :mod:`ctpnp.phantoms.texture`). Read by
the same estimator on 0.7 mm rasters of seeds 0-5, the textured phantoms give
4.9 HU (fat) and 5.1 HU (soft tissue) at a grain of 1.6 mm: the 2 mm local
mean removes much of the wider lumps' variance (the flat phantoms read 0.8
and 2.1 HU there, from edges).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ctpnp.phantoms.phantom import Phantom
from ctpnp.phantoms.shapes import Ellipse, HalfPlane, Polygon, Shape
from ctpnp.phantoms.texture import LumpTexture, lumpy_texture

__all__ = ["TISSUE_TEXTURE", "random_anatomy"]

_TRIES = 200
_LESION_TRIES = 2000
_GAP_MM = 2.0
_SMALL_GAP_MM = 1.5
_TEXTURE_STREAM = 0x7E47
"""Textures draw from ``default_rng([seed, _TEXTURE_STREAM])``: the structures stay those
of ``default_rng(seed)`` with or without texture."""

TISSUE_TEXTURE: dict[str, tuple[float, float]] = {
    # tissue: (std_hu, grain_mm). std_hu: measured on the training patients (lung1,
    # cranium, liver) with ctpnp.data.texture.tissue_statistics, see the module docstring;
    # grain_mm: the measured grain (~1 mm) is mostly the scanners' noise grain; 2.5 mm
    # here for the soft tissues (projection cost), near the measured one for bone
    "fat": (9.8, 2.5),
    "soft_tissue": (9.3, 2.5),
    "liver": (11.1, 2.5),
    "bone": (51.8, 1.25),
}
"""Texture of each tissue class: standard deviation (HU) and grain (mm, HWHM of the
autocorrelation, as ``corr_mm`` of :func:`ctpnp.data.texture.tissue_statistics`)."""
_TEXTURE_SPREAD = (0.75, 1.25)
"""Each phantom scales every tissue's ``std_hu`` by its own ``U(0.75, 1.25)``."""


def random_anatomy(
    seed: int,
    *,
    fov_mm: float = 400.0,
    lesion_radius_mm: tuple[float, float] = (2.0, 10.0),
    lesion_contrast_hu: tuple[float, float] = (5.0, 40.0),
    n_lesions: tuple[int, int] = (1, 5),
    texture: bool = True,
) -> Phantom:
    """A random abdominal slice (see the module docstring for the statistics).

    Args:
        seed: the random seed; same seed and arguments, same phantom.
        fov_mm: the field of view the body must fit in (mm): the body spans
            70-92 % of it.
        lesion_radius_mm: ``(min, max)`` lesion radius (mm).
        lesion_contrast_hu: ``(min, max)`` absolute lesion contrast to the liver (HU).
        n_lesions: ``(min, max)`` number of lesions.
        texture: add the tissue textures (lumpy backgrounds, trabecular bone);
            ``False`` gives the flat phantom, the same shapes either way.

    Returns:
        A :class:`Phantom` of planar shapes (extruded along z) and, with
        ``texture``, its :class:`LumpTexture` s.
    """
    _check_range("lesion_radius_mm", lesion_radius_mm, positive=True)
    _check_range("lesion_contrast_hu", lesion_contrast_hu, positive=False)
    _check_range("n_lesions", n_lesions, positive=False)
    if not all(isinstance(n, int | np.integer) for n in n_lesions):
        raise ValueError(f"n_lesions={n_lesions!r} must be two integers")
    if not (math.isfinite(fov_mm) and fov_mm > 0):
        raise ValueError(f"fov_mm={fov_mm!r} must be positive")
    rng = np.random.default_rng(seed)
    u = rng.uniform
    builder = _Builder(rng)

    # body, fat layer and the soft-tissue region inside it
    width = u(0.70, 0.92) * fov_mm
    depth = u(0.62, 0.80) * width
    cx, cy = u(-0.03, 0.03, size=2) * fov_mm
    fat_hu, tissue_hu = u(-120, -80), u(35, 55)
    fat = u(8, 25)
    back = 0.92 * depth / 2
    body = Ellipse("body", fat_hu + 1000, (HalfPlane.planar(270, back, (cx, cy)),),
                   (cx, cy), (width / 2, depth / 2))
    big_a, big_b = width / 2 - fat, depth / 2 - fat
    tissue = Ellipse("soft_tissue", tissue_hu - fat_hu,
                     (HalfPlane.planar(270, back - fat, (cx, cy)),), (cx, cy), (big_a, big_b))
    builder.shapes += [body, tissue]
    y_back = cy - back + fat

    # spine: spinous process, arch with canal, vertebral body (bottom to top)
    r_v, cortex = u(14, 20), u(1.5, 3)
    cortical_hu, cancellous_hu, csf_hu = u(700, 1100), u(150, 300), u(0, 20)
    r_canal = u(6, 8)
    r_arch = r_canal + u(3, 5)
    y_arch = y_back + 26 + r_arch
    y_vert = y_arch + r_arch + 0.85 * r_v + 1
    spine = [
        Polygon.from_vertices("spinous_process", cortical_hu - tissue_hu,
                              np.array([[cx - 4, y_arch - r_arch - 0.5],
                                        [cx + 4, y_arch - r_arch - 0.5], [cx, y_back + 6]])),
        Ellipse("vertebral_arch", cortical_hu - tissue_hu, (), (cx, y_arch), (r_arch, r_arch)),
        Ellipse("spinal_canal", csf_hu - cortical_hu, (), (cx, y_arch), (r_canal, r_canal)),
        Ellipse("vertebra", cortical_hu - tissue_hu, (), (cx, y_vert), (r_v, 0.85 * r_v)),
        Ellipse("vertebra_cancellous", cancellous_hu - cortical_hu, (), (cx, y_vert),
                (r_v - cortex, 0.85 * r_v - cortex)),
    ]
    builder.shapes += spine
    for shape in (spine[0], spine[1], spine[3]):
        builder.occupy(shape)
    y_top = y_vert + 0.85 * r_v

    def in_tissue(x_frac: tuple[float, float], y_frac: tuple[float, float]) -> tuple[float, float]:
        return cx + big_a * u(*x_frac), cy + big_b * u(*y_frac)

    # organs
    liver_hu = u(50, 70)
    liver = builder.place(lambda: Ellipse(
        "liver", liver_hu - tissue_hu, (), in_tissue((-0.5, -0.3), (0.0, 0.3)),
        (big_a * u(0.28, 0.42), big_b * u(0.38, 0.55)), u(-20, 20)), tissue)
    # great vessels in front of the spine
    builder.place(lambda: Ellipse("aorta", u(120, 300) - tissue_hu, (),
                                  (cx + u(5, 15), y_top + u(12, 20)), (r := u(9, 14), r)), tissue)
    builder.place(lambda: Ellipse("ivc", u(80, 200) - tissue_hu, (),
                                  (cx - u(12, 35), y_top + u(0, 25)), (u(9, 13), u(6, 9))), tissue)

    builder.place(lambda: Ellipse(
        "spleen", u(40, 55) - tissue_hu, (), in_tissue((0.5, 0.7), (-0.35, 0.0)),
        (big_a * u(0.12, 0.2), big_b * u(0.2, 0.35)), u(20, 60)), tissue)
    kidney_hu = u(25, 180)
    for side, name in ((-1, "kidney_right"), (1, "kidney_left")):
        builder.place(lambda side=side, name=name: Ellipse(
            name, kidney_hu - tissue_hu, (),
            (cx + side * big_a * u(0.25, 0.45), y_vert + u(-15, 15)),
            (u(20, 30), u(14, 22)), side * u(30, 60)), tissue)
    for k in range(rng.integers(2, 6)):
        bowel_hu = u(10, 40)
        loop = builder.place(lambda k=k, bowel_hu=bowel_hu: Ellipse(
            f"bowel{k}", bowel_hu - tissue_hu, (), in_tissue((-0.5, 0.6), (0.1, 0.7)),
            (u(12, 30), u(10, 25)), u(0, 180)), tissue)
        if loop is not None and rng.random() < 0.5:
            r_gas = min(loop.axes_mm) * u(0.3, 0.6)
            gas = Ellipse(f"bowel{k}_gas", -1000 - bowel_hu, (), loop.center_mm, (r_gas, r_gas))
            builder.shapes.append(gas)
            builder.inside.append((loop, gas))

    # ribs along the outline, avoiding the spine and the anterior midline
    for k in range(rng.integers(6, 13)):
        def rib(k: int = k) -> Ellipse:
            phi = rng.choice([u(0.10, 0.45), u(0.55, 0.90), u(1.15, 1.40), u(1.60, 1.85)]) \
                * math.pi
            long_axis, short_axis = u(5, 9), u(3, 5)
            inset = long_axis + 3
            centre = (cx + (big_a - inset) * math.cos(phi), cy + (big_b - inset) * math.sin(phi))
            tangent = math.degrees(math.atan2(big_b * math.cos(phi), -big_a * math.sin(phi)))
            return Ellipse(f"rib{k}", u(500, 900) - tissue_hu, (), centre,
                           (long_axis, short_axis), tangent)
        builder.place(rib, tissue)

    # inside the liver: vessels, then lesions of controlled size and contrast
    if liver is not None:
        def in_liver() -> tuple[float, float]:
            rho, angle = math.sqrt(u(0, 1)), u(0, 2 * math.pi)
            a, b = liver.axes_mm
            t = math.radians(liver.angle_deg)
            x, y = a * rho * math.cos(angle), b * rho * math.sin(angle)
            return (liver.center_mm[0] + x * math.cos(t) - y * math.sin(t),
                    liver.center_mm[1] + x * math.sin(t) + y * math.cos(t))

        for k in range(rng.integers(3, 9)):
            builder.place(lambda k=k: Ellipse(f"liver_vessel{k}", u(100, 250) - liver_hu, (),
                                              in_liver(), (r := u(2, 5), r)),
                          liver, gap_mm=_SMALL_GAP_MM)
        for k in range(rng.integers(n_lesions[0], n_lesions[1] + 1)):
            builder.place(lambda k=k: Ellipse(
                f"lesion{k}", rng.choice([-1.0, 1.0]) * u(*lesion_contrast_hu), (), in_liver(),
                (r := u(*lesion_radius_mm), r)), liver, gap_mm=_SMALL_GAP_MM, tries=_LESION_TRIES)
    textures: tuple[LumpTexture, ...] = ()
    if texture:
        textures = _textures(np.random.default_rng([seed, _TEXTURE_STREAM]),
                             _texture_regions(builder, body, tissue, spine))
    return Phantom(f"random_anatomy_{seed}", tuple(builder.shapes),
                   f"random_anatomy(seed={seed}, fov_mm={fov_mm}, "
                   f"lesion_radius_mm={lesion_radius_mm}, lesion_contrast_hu={lesion_contrast_hu}, "
                   f"n_lesions={n_lesions}{', texture=True' if texture else ''})", textures)


def _texture_regions(builder: _Builder, body: Shape, tissue: Shape, spine: list[Shape]
                     ) -> list[tuple[str, Shape, tuple[Shape, ...]]]:
    """``(tissue class, host, holes)`` of every textured region. Blood (great and liver
    vessels), cortical bone, CSF and gas stay flat; lesions carry the liver's texture."""
    regions = [("fat", body, (tissue,)),
               ("soft_tissue", tissue, (spine[0], spine[1], spine[3], *builder.within(tissue))),
               ("bone", spine[4], ())]
    for organ in builder.within(tissue):
        kind = organ.name.rstrip("0123456789")
        if kind == "liver":
            regions.append(("liver", organ, tuple(s for s in builder.within(organ)
                                                  if s.name.startswith("liver_vessel"))))
        elif kind in ("spleen", "kidney_right", "kidney_left", "bowel"):
            regions.append(("soft_tissue", organ, builder.within(organ)))
    return regions


def _textures(rng: np.random.Generator, regions: list[tuple[str, Shape, tuple[Shape, ...]]]
              ) -> tuple[LumpTexture, ...]:
    """One :func:`lumpy_texture` per region, at this phantom's spread of ``TISSUE_TEXTURE``."""
    spread = {kind: rng.uniform(*_TEXTURE_SPREAD) for kind in TISSUE_TEXTURE}
    return tuple(lumpy_texture(rng, f"{host.name}_texture", host, holes,
                               std_hu=TISSUE_TEXTURE[kind][0] * spread[kind],
                               grain_mm=TISSUE_TEXTURE[kind][1])
                 for kind, host, holes in regions)


class _Builder:
    """Collects shapes; places new ones where they fit their host and touch nothing."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.shapes: list[Shape] = []
        self.inside: list[tuple[Shape, Shape]] = []
        """``(host, shape)`` of every placed shape: disjoint shapes inside their host."""
        self._occupied: list[tuple[Shape, np.ndarray]] = []

    def within(self, host: Shape) -> tuple[Shape, ...]:
        """The shapes placed inside ``host``, in placement order."""
        return tuple(shape for h, shape in self.inside if h is host)

    def occupy(self, shape: Shape, gap_mm: float = _GAP_MM) -> None:
        """Mark ``shape`` as a structure later ones must keep clear of."""
        self._occupied.append((shape, _outline(shape, gap_mm)))

    def place(self, draw: Callable[[], Ellipse], host: Shape, *, gap_mm: float = _GAP_MM,
              tries: int = _TRIES) -> Ellipse | None:
        """Draw candidates until one lies inside ``host`` and clear of all placed
        structures (``gap_mm`` apart); add it and return it, or ``None``."""
        for _ in range(tries):
            candidate = draw()
            outline = _outline(candidate, gap_mm)
            if not host.contains(*outline).all():
                continue
            x, y, radius = candidate.bounding_circle_mm()
            if any(other.contains(*outline).any() or candidate.contains(*other_outline).any()
                   for other, other_outline in self._occupied
                   if other is not host and _near(other, x, y, radius + 2 * gap_mm)):
                continue
            self.shapes.append(candidate)
            self.inside.append((host, candidate))
            self.occupy(candidate, gap_mm)
            return candidate
        return None


def _near(shape: Shape, x: float, y: float, radius: float) -> bool:
    """Whether the bounding circles of ``shape`` and of ``(x, y, radius)`` meet."""
    sx, sy, s_radius = shape.bounding_circle_mm()
    return math.hypot(sx - x, sy - y) <= s_radius + radius


def _outline(shape: Shape, margin_mm: float, n: int = 48) -> np.ndarray:
    """``(3, n + 1)`` coordinates ``x, y, z`` of points on the shape's boundary pushed
    out by ``margin_mm``, and of its centre."""
    if isinstance(shape, Polygon):
        v = np.asarray(shape.vertices_mm)
        centre = v.mean(axis=0)
        ring = centre + (v - centre) * (1 + margin_mm / np.linalg.norm(v - centre, axis=1))[:, None]
        points = np.vstack([ring, centre])
    else:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        a, b = shape.axes_mm[0] + margin_mm, shape.axes_mm[1] + margin_mm
        angle = math.radians(shape.angle_deg)
        x, y = a * np.cos(t), b * np.sin(t)
        ring = np.stack([x * math.cos(angle) - y * math.sin(angle),
                         x * math.sin(angle) + y * math.cos(angle)], axis=1) \
            + np.asarray(shape.center_mm[:2])
        points = np.vstack([ring, shape.center_mm[:2]])
    return np.vstack([points.T, np.zeros(points.shape[0])])


def _check_range(name: str, value: tuple[float, float], *, positive: bool) -> None:
    ok = (len(value) == 2 and all(math.isfinite(v) for v in value) and value[0] <= value[1]
          and (value[0] > 0 if positive else value[0] >= 0))
    if not ok:
        raise ValueError(f"{name}={value!r} must be (min, max) with "
                         f"{'0 < min' if positive else '0 <= min'} <= max")
