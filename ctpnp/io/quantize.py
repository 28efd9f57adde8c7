"""Store float values as unsigned 16-bit integers with a DICOM rescale slope and intercept.

The slope and intercept are chosen from the whole volume, then formatted as
DICOM decimal strings (at most 16 characters) and parsed back; the integers are
computed from the parsed values, so what a reader computes from the file is
exactly what was quantised and the round-trip error is at most half a slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from pydicom.valuerep import format_number_as_ds

__all__ = ["Rescale", "decimal_string", "fit_rescale"]

_LEVELS = 65535


def decimal_string(value: float) -> str:
    """``value`` as a DICOM DS of at most 16 characters."""
    return format_number_as_ds(float(value))


@dataclass(frozen=True)
class Rescale:
    """``value = stored * slope + intercept``, with slope and intercept as written (DS text)."""

    slope: str
    intercept: str

    def store(self, values: ArrayLike) -> np.ndarray:
        """uint16 stored values of ``values`` (any shape, within the fitted range)."""
        scaled = (np.asarray(values, dtype=np.float64) - float(self.intercept)) / float(self.slope)
        return np.clip(np.rint(scaled), 0, _LEVELS).astype("<u2")


def fit_rescale(values: ArrayLike, step: float | None = None) -> Rescale:
    """Rescale that stores finite ``values`` in 16 bits.

    Args:
        values: any shape, finite.
        step: the slope to use (e.g. 1 for HU) when the range fits 65535 steps
            of it; ``None`` (or a range too wide) spreads the range over all levels.

    Raises:
        ValueError: for non-finite values.
    """
    values = np.asarray(values)
    if not np.isfinite(values).all():
        raise ValueError("values to store must be finite (no NaN or inf)")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if step is not None and high - low <= step * _LEVELS:
        low = math.floor(low / step) * step
    else:
        step = (high - low) / _LEVELS or 1.0
    intercept = decimal_string(low)
    slope = decimal_string(step)
    while (high - float(intercept)) / float(slope) > _LEVELS + 0.5:  # DS rounding shrank the slope
        slope = decimal_string(float(slope) * (1 + 1e-9))
    return Rescale(slope, intercept)
