"""Figures people look at: reconstructions side by side in an HU window."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import Window


def side_by_side(images_hu: Mapping[str, np.ndarray], path: Path | str, window: Window,
                 suptitle: str = "") -> Path:
    """Write a PNG with one panel per image (title = key), all in one HU window.

    Args:
        images_hu: title → ``(H, W)`` image in HU.
        path: output ``.png``; written to a temporary name, then renamed.
        window: display window (HU).
        suptitle: a line above all panels.
    """
    path = Path(path)
    figure, axes = subplots(1, len(images_hu), figsize=(3.2 * len(images_hu), 3.6),
                            squeeze=False)
    for axis, (title, image) in zip(axes[0], images_hu.items(), strict=True):
        axis.imshow(np.asarray(image), cmap="gray", vmin=window.low_hu, vmax=window.high_hu)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.suptitle(suptitle or f"window [{window.low_hu:g}, {window.high_hu:g}] HU",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    return save_png(figure, path, dpi=110)
