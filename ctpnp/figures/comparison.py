"""The figure of ``ctpnp compare``: reference, reconstructions, differences, log-prior maps."""

from __future__ import annotations

from pathlib import Path

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import SOFT_TISSUE_WINDOW

DIFFERENCE_HU = 200.0
"""Difference images are shown in [-DIFFERENCE_HU, DIFFERENCE_HU] HU."""


def comparison_figure(result, path: Path | str) -> Path:
    """Write a PNG of the middle slice of a :class:`ctpnp.apps.compare.Comparison`: row 1
    images (soft-tissue window), row 2 reconstruction − reference, row 3 (when any has
    one) the log-prior map.

    Written to a temporary name, then renamed; returns ``path``.
    """
    path = Path(path)
    k = result.reference.hu.shape[0] // 2
    volumes = [result.reference, *result.reconstructions]
    with_prior = any(v.log_prior is not None for v in result.reconstructions)
    n_rows = 3 if with_prior else 2
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
            if volume.log_prior is not None:
                shown = axes[2, column].imshow(volume.log_prior[k], cmap="viridis")
                axes[2, column].set_title("log-prior map", fontsize=9)
                figure.colorbar(shown, ax=axes[2, column], fraction=0.046)
        axes[0, column].set_title(title, fontsize=9)
    figure.suptitle(f"slice {k + 1} of {len(result.reference.hu)}; images in "
                    f"[{window.low_hu:g}, {window.high_hu:g}] HU, PSNR/SSIM in that window",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return save_png(figure, path, dpi=100)
