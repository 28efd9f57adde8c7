"""Anti-aliased rasterisation of analytic phantoms onto a :class:`ScanGeometry` grid.

Each pixel receives the mean over a ``supersample × supersample`` grid of
sub-pixel points of every shape's CT number (``hu`` times the fraction of
sub-points inside), added to the air background. Only the pixels in a shape's
bounding box are visited, in row blocks of bounded memory; membership is
evaluated on the separable grid (a column of rows times a row of columns), so
no array of points is ever built.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ctpnp.phantoms.frame import image_to_phantom, phantom_to_image
from ctpnp.phantoms.shapes import Shape
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["AIR_HU", "pixel_means", "rasterize_hu", "subpixel_blocks"]

AIR_HU = -1000.0
"""CT number of the empty background; shapes add to it."""

_POINTS_PER_BLOCK = 1 << 20


def rasterize_hu(shapes: tuple[Shape, ...], geometry: ScanGeometry, supersample: int = 4,
                 z_mm: float = 0.0) -> np.ndarray:
    """CT numbers of a phantom on the image grid of ``geometry``.

    Args:
        shapes: additive shapes in the phantom frame.
        geometry: supplies ``image_shape (H, W)`` and ``pixel_mm``.
        supersample: sub-points per pixel along each axis (>= 1).
        z_mm: the slice position along the rotation axis (mm).

    Returns:
        ``(H, W)`` float32 HU; row 0 is the top of the displayed image.
    """
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample={supersample!r} must be a positive integer")
    s = int(supersample)
    image = np.full(geometry.image_shape, AIR_HU)
    for shape in shapes:
        for rows, cols, points in subpixel_blocks(shape.bounding_box_mm(), geometry, s, z_mm):
            image[rows, cols] += shape.hu * pixel_means(shape.contains(*points), s)
    return image.astype(np.float32)


def subpixel_blocks(box_mm: tuple[float, float, float, float], geometry: ScanGeometry,
                    supersample: int, z_mm: float = 0.0
                    ) -> Iterator[tuple[slice, slice, tuple[np.ndarray, np.ndarray, float]]]:
    """The sub-points of the pixels that may overlap an xy box, in blocks of rows.

    Args:
        box_mm: ``(x_min, x_max, y_min, y_max)`` in the phantom frame (mm).
        geometry: supplies ``image_shape (H, W)`` and ``pixel_mm``.
        supersample: sub-points per pixel along each axis.
        z_mm: the slice position along the rotation axis (mm).

    Yields:
        ``(rows, cols, (x, y, z))``: the image slices of a block and the phantom-frame
        coordinates of its sub-points, ``x`` a ``(1, cols * s)`` row (increasing),
        ``y`` a ``(rows * s, 1)`` column (decreasing) and ``z = z_mm``; average values
        on them back to pixels with :func:`pixel_means`.
    """
    s = supersample
    height, width = geometry.image_shape
    pixel = geometry.pixel_mm
    sub = ((np.arange(s) + 0.5) / s - 0.5) * pixel
    rows, cols = _pixel_ranges(box_mm, geometry)
    if rows.size == 0 or cols.size == 0:
        return
    axis1 = (((cols - (width - 1) / 2) * pixel)[:, None] + sub).ravel()
    block = max(1, _POINTS_PER_BLOCK // (axis1.size * s))
    for start in range(0, rows.size, block):
        r = rows[start:start + block]
        axis0 = (((r - (height - 1) / 2) * pixel)[:, None] + sub).ravel()
        yield (slice(r[0], r[-1] + 1), slice(cols[0], cols[-1] + 1),
               image_to_phantom(axis0[:, None], axis1[None, :], z_mm))


def pixel_means(values: np.ndarray, supersample: int) -> np.ndarray:
    """``(rows * s, cols * s)`` sub-point values → ``(rows, cols)`` pixel means."""
    s = supersample
    rows, cols = values.shape[0] // s, values.shape[1] // s
    return values.reshape(rows, s, cols, s).mean(axis=(1, 3))


def _pixel_ranges(box_mm: tuple[float, float, float, float], geometry: ScanGeometry
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pixels that may overlap the xy box ``box_mm``."""
    x_min, x_max, y_min, y_max = box_mm
    corners = phantom_to_image(np.array([x_min, x_max, x_min, x_max]),
                               np.array([y_min, y_min, y_max, y_max]), np.zeros(4))
    ranges = []
    for axis, n in enumerate(geometry.image_shape):
        centre_index = corners[axis] / geometry.pixel_mm + (n - 1) / 2
        first = max(0, int(np.floor(centre_index.min())))
        last = min(n - 1, int(np.ceil(centre_index.max())))
        ranges.append(np.arange(first, last + 1))
    return ranges[0], ranges[1]
