"""2-D axial HU slices of a split, optionally resampled and cropped for training.

Slices are ``(H, W)`` float32 HU in display orientation (rows anterior to
posterior, columns patient right to left), patient by patient in
:data:`~ctpnp.data.sources.SPLITS` order, then feet to head.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ctpnp.data.cache import load_patient
from ctpnp.data.fetch import AIR_HU
from ctpnp.data.sources import SPLITS

__all__ = ["fit_to_size", "patient_slices_hu", "resample_slice", "slices_hu"]


def resample_slice(hu: np.ndarray, from_mm: float, to_mm: float) -> np.ndarray:
    """Resample an ``(H, W)`` HU slice of ``from_mm`` pixels to ``to_mm`` pixels.

    Bilinear, with antialiasing when shrinking (a triangle filter as wide as the new
    pixel), so the same field of view is covered by ``round(H * from_mm / to_mm)`` rows.
    """
    import torch  # here, so that importing ctpnp.data (e.g. for `ctpnp data list`) stays quick
    import torch.nn.functional as F

    shape = tuple(max(1, round(n * from_mm / to_mm)) for n in hu.shape)
    image = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
    resized = F.interpolate(image, size=shape, mode="bilinear", align_corners=False,
                            antialias=to_mm > from_mm)
    return resized[0, 0].numpy()


def fit_to_size(hu: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop, or pad with air (−1024 HU), an ``(H, W)`` slice to ``(size, size)``."""
    out = np.full((size, size), AIR_HU, dtype=np.float32)
    kept = [min(n, size) for n in hu.shape]
    source = tuple(slice((n - m) // 2, (n - m) // 2 + m)
                   for n, m in zip(hu.shape, kept, strict=True))
    target = tuple(slice((size - m) // 2, (size - m) // 2 + m) for m in kept)
    out[target] = hu[source]
    return out


def slices_hu(split: str, *, pixel_mm: float | None = None, size: int | None = None,
              cache_dir: Path | str | None = None) -> Iterator[np.ndarray]:
    """Yield every axial slice of the patients of ``split`` (``"train"``, ``"validation"``);
    see :func:`patient_slices_hu` for the arguments.

    Raises:
        KeyError: an unknown split. DataSourceError: a patient not in the cache.
    """
    yield from patient_slices_hu(SPLITS[split], pixel_mm=pixel_mm, size=size,
                                 cache_dir=cache_dir)


def patient_slices_hu(patients: Iterable[str], *, pixel_mm: float | None = None,
                      size: int | None = None, cache_dir: Path | str | None = None
                      ) -> Iterator[np.ndarray]:
    """Yield every axial slice of ``patients``, patient by patient, feet to head.

    Args:
        patients: patient ids of :data:`~ctpnp.data.sources.SOURCES`.
        pixel_mm: resample each slice to this pixel size (:func:`resample_slice`);
            ``None`` keeps the patient's own.
        size: then centre-crop or pad with air to ``(size, size)`` (:func:`fit_to_size`).
        cache_dir: the cache folder (patients must have been fetched).

    Yields:
        ``(H, W)`` float32 HU slices.

    Raises:
        DataSourceError: a patient not in the cache.
    """
    for patient in patients:
        volume = load_patient(patient, cache_dir)
        for hu in volume.hu:
            if pixel_mm is not None:
                hu = resample_slice(hu, volume.pixel_mm, pixel_mm)
            yield hu if size is None else fit_to_size(hu, size)
