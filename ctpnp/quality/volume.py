"""The quality maps and verdicts of a reconstructed volume, slice by slice, resumable.

For each finite slice of a μ volume and its sinogram: the prior map (nats per
pixel) and, when a calibration is given, the implausibility (z per region,
spread over the region's pixels) and the slice's :class:`SliceVerdict`. Each
slice's result is kept in a cache folder, so an interrupted run does not
recompute it. Slices that are NaN (diverged) stay NaN and get no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctpnp.atomic import staged_file
from ctpnp.priors.base import HasLogPriorMap
from ctpnp.projector import Tomography
from ctpnp.quality.indicator import (
    Calibration,
    SliceVerdict,
    load_judge,
    region_scores,
    slice_verdicts,
)
from ctpnp.quality.maps import expand_regions, prior_map, quality_maps
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["VolumeQuality", "volume_quality"]


@dataclass(frozen=True)
class VolumeQuality:
    """``log_prior``: ``(S, H, W)`` nats per pixel, ``None`` for a prior without a map;
    ``implausibility``: ``(S, H, W)`` z (each region's value on its pixels, NaN outside the
    body), ``None`` without a calibration; ``verdicts``: per slice, ``None`` for a NaN slice
    or without a calibration."""

    log_prior: np.ndarray | None
    implausibility: np.ndarray | None
    verdicts: list[SliceVerdict | None]


def volume_quality(volume: np.ndarray, sinograms: np.ndarray, geometry: ScanGeometry, prior,
                   calibration: Calibration | None, cache: Path, device: str = "cpu"
                   ) -> VolumeQuality:
    """The maps and verdicts of every slice (see the module docstring).

    Args:
        volume: ``(S, H, W)`` μ (1/mm), NaN for slices that are not images.
        sinograms: ``(S, views, channels)`` the post-log data they were made from.
        geometry: the scan and image grid of every slice.
        prior: the prior of the reconstruction. calibration: its calibration, or ``None``
            (its judge, :func:`~ctpnp.quality.load_judge`, makes the denoiser maps).
        cache: folder of per-slice results (created). device: where the maps are computed.
    """
    op = Tomography(geometry, device=device) if calibration is not None else None
    judge = load_judge(calibration, prior, device) if calibration is not None else None
    shape = volume.shape
    log_prior = np.full(shape, np.nan, dtype=np.float32)
    implausibility = np.full(shape, np.nan, dtype=np.float32)
    verdicts: list[SliceVerdict | None] = [None] * len(volume)
    for k, image in enumerate(volume):
        path = cache / f"slice_{k:05d}.npz"
        if not path.exists():
            with staged_file(path) as temporary, temporary.open("wb") as stream:
                np.savez(stream, **_slice(image, sinograms[k], op, prior, judge, calibration,
                                          device))
        stored = np.load(path)
        log_prior[k], implausibility[k] = stored["log_prior"], stored["implausibility"]
        if "score" in stored:
            regions = tuple((int(r), int(c), float(z)) for r, c, z in stored["regions"])
            score, threshold = float(stored["score"]), float(stored["threshold_z"])
            verdicts[k] = SliceVerdict(score, score > threshold, threshold, regions)
    return VolumeQuality(log_prior if isinstance(prior, HasLogPriorMap) else None,
                         implausibility if calibration is not None else None, verdicts)


def _slice(image: np.ndarray, sinogram: np.ndarray, op: Tomography | None, prior, judge,
           calibration: Calibration | None, device: str) -> dict[str, np.ndarray]:
    """One slice's arrays for the cache."""
    nan = np.full(image.shape, np.nan, dtype=np.float32)
    out = {"log_prior": nan, "implausibility": nan}
    if not np.isfinite(image).all():
        return out
    x = torch.from_numpy(np.array(image, dtype=np.float32))[None, None].to(device)
    if op is None:
        values = prior_map(prior, x)
        if values is not None:
            out["log_prior"] = values[0, 0].cpu().numpy()
        return out
    y = torch.from_numpy(np.array(sinogram, dtype=np.float32))[None, None].to(device)
    maps = quality_maps(x, y, op, prior, judge)
    scores = region_scores(maps, x, calibration)
    (verdict,) = slice_verdicts(scores, calibration)
    if maps.prior_nats is not None:
        out["log_prior"] = maps.prior_nats[0, 0].cpu().numpy()
    out["implausibility"] = expand_regions(scores.implausibility, image.shape,
                                           calibration.region_px)[0, 0].float().numpy()
    out["score"] = np.array(verdict.score)
    out["threshold_z"] = np.array(verdict.threshold_z)
    out["regions"] = np.array([list(r) for r in verdict.regions], dtype=np.float64
                              ).reshape(-1, 3)
    return out
