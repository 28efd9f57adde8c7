"""Image quality: metrics in HU windows, and where a reconstruction is not to be trusted.

* :mod:`ctpnp.quality.metrics`: PSNR, SSIM, RMSE in HU windows, both windows at once.
* :mod:`ctpnp.quality.maps`: per-pixel maps: the prior's residual and asymmetry, its
  log-prior map, data consistency.
* :mod:`ctpnp.quality.indicator`: the calibrated implausibility (z per region), per-slice
  score and flag, and the calibrations per prior.
* :mod:`ctpnp.quality.detection` (imported by name): how well a region score detects
  failed regions (AUROC, Spearman).
* :mod:`ctpnp.quality.validation` (imported by name): the validation scans they are
  calibrated and measured on.
"""

from ctpnp.quality.indicator import (
    Calibration,
    DoseStatistics,
    RegionScores,
    SliceVerdict,
    calibration_path,
    fit_calibration,
    load_calibration,
    load_judge,
    region_features,
    region_scores,
    slice_verdicts,
)
from ctpnp.quality.maps import (
    REGION_PX,
    QualityMaps,
    body_regions,
    data_consistency_map,
    denoiser_maps_hu,
    equivariant_spread_hu,
    expand_regions,
    prior_map,
    quality_maps,
    region_means,
    region_rmse_hu,
)
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

__all__ = ["FULL_WINDOW", "QUALITY_COLUMNS", "REGION_PX", "SOFT_TISSUE_WINDOW", "WINDOWS",
           "Calibration", "DoseStatistics", "QualityMaps", "RegionScores", "SliceVerdict",
           "Window", "body_regions", "calibration_path", "data_consistency_map",
           "denoiser_maps_hu", "equivariant_spread_hu", "expand_regions", "fit_calibration",
           "load_calibration", "load_judge", "prior_map", "psnr_hu",
           "quality_maps", "quality_row", "region_features", "region_means", "region_rmse_hu",
           "region_scores", "rmse_hu", "slice_verdicts", "ssim_hu", "window_scores"]
