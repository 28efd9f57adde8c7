"""The quality indicator drawn on a slice: the calibrated implausibility and its flagged regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import SOFT_TISSUE_WINDOW

__all__ = ["flagged_regions_figure"]


def flagged_regions_figure(hu: np.ndarray, implausibility_z: np.ndarray, threshold_z: float,
                           region_px: int, path: Path | str, title: str) -> Path:
    """PNG of one slice (soft-tissue window) beside it with the implausibility overlaid and
    every region above ``threshold_z`` outlined in red.

    Args:
        hu: ``(H, W)`` slice (HU). implausibility_z: ``(h, w)`` region z-scores (NaN outside
            the body), regions of ``region_px``² pixels from the top-left corner.
        threshold_z: the calibration's flag threshold. path: the ``.png`` (written
            atomically). title: the figure's title.
    """
    figure, axes = subplots(1, 2, figsize=(8, 4.2))
    window = {"cmap": "gray", "vmin": SOFT_TISSUE_WINDOW.low_hu,
              "vmax": SOFT_TISSUE_WINDOW.high_hu}
    height, width = hu.shape
    extent = (-0.5, implausibility_z.shape[1] * region_px - 0.5,
              implausibility_z.shape[0] * region_px - 0.5, -0.5)
    axes[0].imshow(hu, **window)
    axes[0].set_title(f"[{SOFT_TISSUE_WINDOW.low_hu:g}, {SOFT_TISSUE_WINDOW.high_hu:g}] HU",
                      fontsize=9)
    axes[1].imshow(hu, **window)
    finite = implausibility_z[np.isfinite(implausibility_z)]
    top = max(float(finite.max()) if finite.size else 0.0, threshold_z + 1.0)
    shown = axes[1].imshow(np.ma.masked_invalid(implausibility_z), cmap="magma", alpha=0.55,
                           vmin=-3.0, vmax=top, extent=extent, interpolation="nearest")
    rows, cols = np.nonzero(np.nan_to_num(implausibility_z, nan=-np.inf) > threshold_z)
    for row, col in zip(rows, cols, strict=True):
        axes[1].add_patch(Rectangle((col * region_px - 0.5, row * region_px - 0.5), region_px,
                                    region_px, fill=False, edgecolor="red", linewidth=1.2))
    axes[1].set_title(f"implausibility (z), {len(rows)} regions above {threshold_z:.2f}",
                      fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    for axis in axes:
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(height - 0.5, -0.5)
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_png(figure, path, dpi=100)
