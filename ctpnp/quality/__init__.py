"""Image quality in HU with an explicit window: PSNR, SSIM, RMSE, and both windows at once.

See :mod:`ctpnp.quality.metrics`.
"""

from ctpnp.quality.metrics import (
    FULL_WINDOW,
    QUALITY_COLUMNS,
    SOFT_TISSUE_WINDOW,
    WINDOWS,
    Window,
    psnr_hu,
    quality_row,
    rmse_hu,
    ssim_hu,
    window_scores,
)

__all__ = ["FULL_WINDOW", "QUALITY_COLUMNS", "SOFT_TISSUE_WINDOW", "WINDOWS", "Window", "psnr_hu",
           "quality_row", "rmse_hu", "ssim_hu", "window_scores"]
