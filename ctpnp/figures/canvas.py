"""Figures without pyplot: no global backend is chosen or changed, nothing is shown.

matplotlib's object API renders a :class:`~matplotlib.figure.Figure` to PNG by
itself (Agg), so ctpnp never calls ``matplotlib.use`` and a user's own
backend (a notebook's, a GUI's) is left alone.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ctpnp.atomic import staged_file

__all__ = ["save_png", "subplots"]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs):
    """A new figure of ``figsize`` inches and its axes (as ``Figure.subplots`` returns them)."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(nrows, ncols, **kwargs)


def save_png(figure: Figure, path: Path | str, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG, atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    with staged_file(path) as partial:
        figure.savefig(partial, dpi=dpi, format="png")
    return path
