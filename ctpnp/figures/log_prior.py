"""The figure of ``ctpnp reconstruct``: a slice beside its log-prior map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import SOFT_TISSUE_WINDOW

__all__ = ["log_prior_figure"]


def log_prior_figure(hu: np.ndarray, log_prior: np.ndarray, path: Path, label: str) -> Path:
    """PNG of the middle slice: the image (soft-tissue window) beside its log-prior map.

    Args:
        hu: ``(S, H, W)`` volume (HU); log_prior: ``(S, H, W)`` map (nats per pixel).
        path: the ``.png`` to write (atomically). label: the title.
    """
    k = len(hu) // 2
    figure, axes = subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(hu[k], cmap="gray", vmin=SOFT_TISSUE_WINDOW.low_hu,
                   vmax=SOFT_TISSUE_WINDOW.high_hu)
    axes[0].set_title(f"slice {k + 1}, [{SOFT_TISSUE_WINDOW.low_hu:g}, "
                      f"{SOFT_TISSUE_WINDOW.high_hu:g}] HU", fontsize=9)
    finite = log_prior[k][np.isfinite(log_prior[k])]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    shown = axes[1].imshow(log_prior[k], cmap="viridis", vmin=low, vmax=high)
    axes[1].set_title("log-prior map (nats/pixel, larger = less plausible)", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(label, fontsize=10)
    figure.tight_layout()
    return save_png(figure, path, dpi=100)
