"""The one shape of an application's progress report."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress"]

Progress = Callable[[int, int, str], object]
"""``progress(done, total, note)``: ``done`` of ``total`` units (slices, cases) finished,
``note`` a short description of the last one (may be empty); called in the calling
process. An exception raised from it stops the work, keeping what is finished."""
