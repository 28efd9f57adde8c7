"""The map between the phantom frame and the image frame of :mod:`ctpnp.scanner.geometry`.

Phantoms are written in a patient-like frame, the one of the classical
definitions (Shepp–Logan, FORBILD): ``x`` to the right of the displayed image,
``y`` up on the display, ``z`` along the rotation axis, all in mm. The image
frame has ``axis 0`` running down the rows and ``axis 1`` along the columns.
The map is the rotation

    ``axis 0 = -y``, ``axis 1 = x``, ``z = z``

so an image ``(H, W)`` shown with row 0 at the top displays the phantom
upright, with ``+x`` to the right. It is a proper rotation (no mirror), so
counter-clockwise angles in the phantom frame stay counter-clockwise on the
display. Rasterisation and projection both go through these functions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["image_to_phantom", "image_vectors_to_phantom", "phantom_to_image"]


def image_to_phantom(axis0: np.ndarray, axis1: np.ndarray, z: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-frame components (broadcastable arrays, mm) → phantom ``(x, y, z)``."""
    return axis1, -axis0, z


def phantom_to_image(x: np.ndarray, y: np.ndarray, z: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phantom components ``(x, y, z)`` → image-frame ``(axis 0, axis 1, z)``."""
    return -y, x, z


def image_vectors_to_phantom(vectors: np.ndarray) -> np.ndarray:
    """``(..., 3)`` points or directions of the image frame → ``(..., 3)`` phantom frame."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.stack(image_to_phantom(v[..., 0], v[..., 1], v[..., 2]), axis=-1)
