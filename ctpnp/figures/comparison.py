"""The figure of ``ctpnp compare``: reference, reconstructions, differences, log-prior maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import SOFT_TISSUE_WINDOW

DIFFERENCE_HU = 200.0
"""Difference images are shown in [-DIFFERENCE_HU, DIFFERENCE_HU] HU."""
IMPLAUSIBILITY_TOP_Z = 6.0
"""Implausibility overlays span z in [-3, IMPLAUSIBILITY_TOP_Z]."""


def comparison_figure(result, path: Path | str) -> Path:
    """Write a PNG of the middle slice of a :class:`ctpnp.apps.compare.Comparison`: row 1
    images (soft-tissue window), row 2 reconstruction − reference, then (when any has
    one) the log-prior map and the calibrated implausibility over the image.

    Written to a temporary name, then renamed; returns ``path``.
    """
    path = Path(path)
    k = result.reference.hu.shape[0] // 2
    volumes = [result.reference, *result.reconstructions]
    map_rows = [name for name in ("log_prior", "implausibility_z")
                if any(getattr(v, name) is not None for v in result.reconstructions)]
    n_rows = 2 + len(map_rows)
    figure, axes = subplots(n_rows, len(volumes), figsize=(3.2 * len(volumes), 3.3 * n_rows),
                            squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    window = SOFT_TISSUE_WINDOW
    for column, volume in enumerate(volumes):
        axes[0, column].imshow(volume.hu[k], cmap="gray", vmin=window.low_hu,
                               vmax=window.high_hu)
        title = volume.name
        if column > 0:
            soft = result.scores[column - 1]["soft_tissue"]
            title += f"\n{soft.psnr_db[k]:.1f} dB, SSIM {soft.ssim[k]:.3f}"
            shown = axes[1, column].imshow(volume.hu[k] - result.reference.hu[k], cmap="RdBu_r",
                                           vmin=-DIFFERENCE_HU, vmax=DIFFERENCE_HU)
            axes[1, column].set_title("difference (HU)", fontsize=9)
            figure.colorbar(shown, ax=axes[1, column], fraction=0.046)
            for row, name in enumerate(map_rows, start=2):
                values = getattr(volume, name)
                if values is None:
                    continue
                axis = axes[row, column]
                if name == "log_prior":
                    shown = axis.imshow(values[k], cmap="viridis")
                    axis.set_title("log-prior map (nats/px)", fontsize=9)
                else:
                    axis.imshow(volume.hu[k], cmap="gray", vmin=window.low_hu,
                                vmax=window.high_hu)
                    shown = axis.imshow(np.ma.masked_invalid(values[k]), cmap="magma",
                                        alpha=0.55, vmin=-3.0, vmax=IMPLAUSIBILITY_TOP_Z,
                                        interpolation="nearest")
                    axis.set_title("implausibility (z)", fontsize=9)
                figure.colorbar(shown, ax=axis, fraction=0.046)
        axes[0, column].set_title(title, fontsize=9)
    figure.suptitle(f"slice {k + 1} of {len(result.reference.hu)}; images in "
                    f"[{window.low_hu:g}, {window.high_hu:g}] HU, PSNR/SSIM in that window",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return save_png(figure, path, dpi=100)
