"""Figures people look at: reconstructions side by side in an HU window."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import Window


def side_by_side(images_hu: Mapping[str, np.ndarray], path: Path | str, window: Window,
                 suptitle: str = "", zoom: tuple[int, int, int] | None = None) -> Path:
    """Write a PNG with one panel per image (title = key), all in one HU window.

    Args:
        images_hu: title → ``(H, W)`` image in HU.
        path: output ``.png``; written to a temporary name, then renamed.
        window: display window (HU).
        suptitle: a line above all panels.
        zoom: ``(top_row, left_column, side)`` in pixels: a square outlined in
            yellow on every image and shown enlarged in a second row.
    """
    path = Path(path)
    n_rows = 1 if zoom is None else 2
    figure, axes = subplots(n_rows, len(images_hu),
                            figsize=(3.2 * len(images_hu), 3.6 + 3.2 * (n_rows - 1)),
                            squeeze=False)
    shown = {"cmap": "gray", "vmin": window.low_hu, "vmax": window.high_hu}
    for column, (title, image) in enumerate(images_hu.items()):
        image = np.asarray(image)
        axes[0, column].imshow(image, **shown)
        axes[0, column].set_title(title, fontsize=9)
        if zoom is not None:
            top, left, side = zoom
            axes[0, column].add_patch(Rectangle((left - 0.5, top - 0.5), side, side,
                                                fill=False, edgecolor="yellow", linewidth=1.0))
            axes[1, column].imshow(image[top:top + side, left:left + side],
                                   interpolation="nearest", **shown)
            axes[1, column].set_title(f"zoom ({side}x{side} px)", fontsize=9)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(suptitle or f"window [{window.low_hu:g}, {window.high_hu:g}] HU",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9 if zoom is None else 0.95),
                        h_pad=0.0 if zoom is None else 2.0)
    return save_png(figure, path, dpi=110)
