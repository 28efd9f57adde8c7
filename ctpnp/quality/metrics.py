"""Image quality in HU with an explicit window: PSNR, SSIM, RMSE.

Both images are clipped to the window ``(low_hu, high_hu)`` and the data range
is the window width, so a figure always states what it measured.
:func:`window_scores` gives all three in every window of :data:`WINDOWS`, and
:func:`quality_row` the one row of a single image that tables and tuning
records use.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Window(NamedTuple):
    """An HU display/measurement window."""

    low_hu: float
    high_hu: float

    @property
    def width_hu(self) -> float:
        return self.high_hu - self.low_hu


FULL_WINDOW = Window(-1000.0, 2000.0)
"""Air to dense bone."""
SOFT_TISSUE_WINDOW = Window(-160.0, 240.0)
"""Centre 40 HU, width 400 HU."""
WINDOWS: dict[str, Window] = {"full": FULL_WINDOW, "soft_tissue": SOFT_TISSUE_WINDOW}
"""The measurement windows, by the name used in outputs."""


def _clip(hu: torch.Tensor, window: Window) -> torch.Tensor:
    return hu.double().clamp(window.low_hu, window.high_hu)


def rmse_hu(hu: torch.Tensor, reference_hu: torch.Tensor, window: Window = FULL_WINDOW
            ) -> torch.Tensor:
    """``(B,)`` root-mean-square error (HU) of ``(B, 1, H, W)`` images inside ``window``."""
    _check_pair(hu, reference_hu)
    diff = _clip(hu, window) - _clip(reference_hu, window)
    return diff.flatten(1).pow(2).mean(dim=1).sqrt()


def psnr_hu(hu: torch.Tensor, reference_hu: torch.Tensor, window: Window = FULL_WINDOW
            ) -> torch.Tensor:
    """``(B,)`` PSNR (dB) with the window width as data range."""
    rmse = rmse_hu(hu, reference_hu, window).clamp_min(1e-12)
    return 20.0 * torch.log10(window.width_hu / rmse)


def ssim_hu(hu: torch.Tensor, reference_hu: torch.Tensor, window: Window = FULL_WINDOW,
            sigma_px: float = 1.5) -> torch.Tensor:
    """``(B,)`` SSIM (Wang et al. 2004; Gaussian window of ``sigma_px`` px, K1=0.01, K2=0.03)."""
    _check_pair(hu, reference_hu)
    x = (_clip(hu, window) - window.low_hu) / window.width_hu
    y = (_clip(reference_hu, window) - window.low_hu) / window.width_hu
    radius = int(3.5 * sigma_px + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    g = torch.exp(-0.5 * (offsets / sigma_px) ** 2)
    g = g / g.sum()

    def blur(image: torch.Tensor) -> torch.Tensor:
        image = F.conv2d(image, g.view(1, 1, -1, 1))
        return F.conv2d(image, g.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def window_scores(hu: torch.Tensor, reference_hu: torch.Tensor
                  ) -> dict[str, dict[str, torch.Tensor]]:
    """PSNR (dB), SSIM and RMSE (HU) of ``(B, 1, H, W)`` images in every window of :data:`WINDOWS`.

    Returns:
        ``{window name: {"psnr_db", "ssim", "rmse_hu"}}``, each ``(B,)`` float64.
    """
    return {name: {"psnr_db": psnr_hu(hu, reference_hu, window),
                   "ssim": ssim_hu(hu, reference_hu, window),
                   "rmse_hu": rmse_hu(hu, reference_hu, window)}
            for name, window in WINDOWS.items()}


QUALITY_COLUMNS = ("psnr_full_db", "psnr_soft_db", "ssim_full", "ssim_soft", "rmse_hu")
"""The keys of :func:`quality_row`."""


def quality_row(hu: torch.Tensor, reference_hu: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM in the full and soft-tissue windows and RMSE (HU, full window)
    of one ``(1, 1, H, W)`` image, keyed by :data:`QUALITY_COLUMNS`; NaN everywhere when
    the image is not finite."""
    if not bool(torch.isfinite(hu).all()):
        return dict.fromkeys(QUALITY_COLUMNS, math.nan)
    scores = window_scores(hu, reference_hu)
    full, soft = scores["full"], scores["soft_tissue"]
    values = (full["psnr_db"], soft["psnr_db"], full["ssim"], soft["ssim"], full["rmse_hu"])
    return {name: float(value) for name, value in zip(QUALITY_COLUMNS, values, strict=True)}


def _check_pair(hu: torch.Tensor, reference_hu: torch.Tensor) -> None:
    if hu.shape != reference_hu.shape or hu.ndim != 4 or hu.shape[1] != 1:
        raise ValueError(f"expected two (B, 1, H, W) images of one shape, got "
                         f"{tuple(hu.shape)} and {tuple(reference_hu.shape)}")
