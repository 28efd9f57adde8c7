"""The study's figures, each written atomically to ``out_dir``.

Records are those of :mod:`ctpnp.apps.study.run` (one dict per case); images are
read back from the case store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctpnp.figures.canvas import save_png, subplots
from ctpnp.quality import SOFT_TISSUE_WINDOW

if TYPE_CHECKING:
    from ctpnp.apps.study.config import StudyConfig

CaseArrays = Callable[[str], np.ndarray]
"""``case_arrays(case_id)`` -> ``(3, H, W)``: a stored case's image (HU), log-prior map
(nats/pixel) and implausibility (z per region on its pixels, NaN where not scored)."""

__all__ = ["FIGURES", "mean_by", "write_figures"]

FIGURES = {
    "quality_vs_dose": "quality_vs_dose.png",
    "convergence": "convergence.png",
    "hu_accuracy": "hu_accuracy.png",
    "noise_vs_dose": "noise_vs_dose.png",
    "montage": "montage.png",
    "log_prior_vs_error": "log_prior_vs_error.png",
    "implausibility": "implausibility.png",
}
"""Figure → file name in ``out_dir``."""


def mean_by(results: Sequence[dict], value: str, finite: bool = False, **match) -> float:
    """Mean of ``value`` over the records whose fields equal ``match`` (NaN if none); with
    ``finite``, over the finite values only."""
    values = [r[value] for r in results if all(r[k] == v for k, v in match.items())]
    if finite:
        values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def write_figures(out_dir: Path, case_arrays: CaseArrays, config: StudyConfig,
                  references: Sequence[dict], results: Sequence[dict]) -> dict[str, Path]:
    """Write every figure of :data:`FIGURES` that the results allow; returns name → path.

    ``case_arrays`` reads a stored case's image and maps (see :data:`CaseArrays`).
    """
    methods = [m.name for m in config.methods]
    written = {
        "quality_vs_dose": _quality_vs_dose(results, config, methods),
        "convergence": _convergence(results, config, methods),
        "montage": _montage(case_arrays, references, results, config, methods),
        "log_prior_vs_error": _log_prior_vs_error(case_arrays, references, results, config,
                                                  methods),
        "implausibility": _implausibility(case_arrays, references, results, config),
    }
    roi_scenes = [s.name for s in config.scenes if s.rois]
    if roi_scenes:
        written["hu_accuracy"] = _hu_accuracy(results, roi_scenes[0], config, methods)
        written["noise_vs_dose"] = _noise_vs_dose(results, roi_scenes[0], config, methods)
    return {name: _save(figure, out_dir / FIGURES[name]) for name, figure in written.items()}


def _quality_vs_dose(results, config, methods):
    families = list(dict.fromkeys(s.family for s in config.scenes))
    columns = (("psnr_full_db", "PSNR full window (dB)"), ("psnr_soft_db", "PSNR soft tissue (dB)"),
               ("ssim_full", "SSIM full window"), ("ssim_soft", "SSIM soft tissue"))
    figure, axes = subplots(len(families), len(columns), squeeze=False,
                            figsize=(3.4 * len(columns), 2.8 * len(families)))
    for row, family in enumerate(families):
        for col, (value, label) in enumerate(columns):
            axis = axes[row, col]
            for method in methods:
                axis.plot(config.photons, [mean_by(results, value, family=family, method=method,
                                                   photons=p) for p in config.photons],
                          marker="o", label=method)
            axis.set_xscale("log")
            axis.set_title(f"{family}: {label}", fontsize=9)
            axis.set_xlabel("photons per reading")
    axes[0, -1].legend(fontsize=7)
    figure.suptitle("Quality vs dose (mean over the scenes of each family)", fontsize=10)
    return figure


def _convergence(results, config, methods):
    scenes = [s.name for s in config.scenes]
    figure, axes = subplots(len(config.photons), len(scenes), squeeze=False,
                            figsize=(3.0 * len(scenes), 2.6 * len(config.photons)))
    for row, photons in enumerate(config.photons):
        for col, scene in enumerate(scenes):
            axis = axes[row, col]
            for method in methods:
                record = _find(results, scene=scene, photons=photons, method=method)
                if record is None:
                    continue
                if record["psnr_trace_db"]:
                    axis.plot(np.arange(1, len(record["psnr_trace_db"]) + 1),
                              record["psnr_trace_db"], label=method)
                else:
                    axis.axhline(record["psnr_full_db"], linestyle="--", color="gray",
                                 label=method)
            axis.set_xscale("log")
            axis.set_title(f"{scene}, {photons:g} photons", fontsize=8)
            axis.set_xlabel("iteration")
            axis.set_ylabel("PSNR full (dB)")
    axes[0, -1].legend(fontsize=6)
    figure.suptitle("Convergence: PSNR (full window) per iteration", fontsize=10)
    return figure


def _hu_accuracy(results, scene, config, methods):
    figure, axes = subplots(1, len(config.photons), squeeze=False,
                            figsize=(3.6 * len(config.photons), 3.2), sharey=True)
    for col, photons in enumerate(config.photons):
        axis = axes[0, col]
        for offset, method in enumerate(methods):
            record = _find(results, scene=scene, photons=photons, method=method)
            if record is None or "inserts" not in record:
                continue
            inserts = record["inserts"].values()
            nominal = np.array([i["nominal_hu"] for i in inserts])
            error = np.array([i["measured_hu"] - i["nominal_hu"] for i in inserts])
            axis.plot(nominal + 8 * (offset - len(methods) / 2), error, "o", label=method)
        axis.axhline(0.0, color="gray", linewidth=0.8)
        axis.set_title(f"{scene}, {photons:g} photons", fontsize=9)
        axis.set_xlabel("nominal insert CT number (HU)")
    axes[0, 0].set_ylabel("measured − nominal (HU)")
    axes[0, -1].legend(fontsize=7)
    figure.suptitle("Insert CT numbers: mean in eroded ROIs minus nominal", fontsize=10)
    return figure


def _noise_vs_dose(results, scene, config, methods):
    figure, axis = subplots(figsize=(4.8, 3.6))
    for method in methods:
        axis.plot(config.photons, [mean_by(results, "noise_std_hu", scene=scene, method=method,
                                           photons=p) for p in config.photons],
                  marker="o", label=method)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("photons per reading")
    axis.set_ylabel("std in the uniform water ROI (HU)")
    axis.set_title(f"Noise vs dose ({scene})", fontsize=10)
    axis.legend(fontsize=7)
    return figure


def _montage(case_arrays, references, results, config, methods):
    photons = min(config.photons)
    scenes = [s.name for s in config.scenes]
    columns = ["reference", *methods]
    figure, axes = subplots(len(scenes), len(columns), squeeze=False,
                            figsize=(2.2 * len(columns), 2.3 * len(scenes)))
    window = SOFT_TISSUE_WINDOW
    for row, scene in enumerate(scenes):
        for col, name in enumerate(columns):
            axis = axes[row, col]
            axis.axis("off")
            record = (_find(references, scene=scene) if name == "reference"
                      else _find(results, scene=scene, photons=photons, method=name))
            if record is None:
                continue
            axis.imshow(case_arrays(record["id"])[0], cmap="gray",
                        vmin=window.low_hu, vmax=window.high_hu)
            title = name if name == "reference" else \
                f"{name}\n{record['psnr_full_db']:.1f} / {record['psnr_soft_db']:.1f} dB"
            axis.set_title(f"{scene}: {title}" if col == 0 else title, fontsize=7)
    figure.suptitle(f"{photons:g} photons per reading; window [{window.low_hu:g}, "
                    f"{window.high_hu:g}] HU; PSNR full / soft tissue", fontsize=9)
    return figure


def _log_prior_vs_error(case_arrays, references, results, config, methods):
    """For the first PnP method at the lowest dose: |error|, its log-prior map, the reference's."""
    pnp = [m.name for m in config.methods if m.prior is not None] or methods
    method, photons = pnp[0], min(config.photons)
    scenes = [s.name for s in config.scenes]
    figure, axes = subplots(len(scenes), 3, squeeze=False, figsize=(8.4, 2.5 * len(scenes)))
    for row, scene in enumerate(scenes):
        record = _find(results, scene=scene, photons=photons, method=method)
        reference = _find(references, scene=scene)
        if record is None or reference is None:
            continue
        image, log_prior, _ = case_arrays(record["id"])
        truth, truth_log_prior, _ = case_arrays(reference["id"])
        limits = np.nanpercentile(np.concatenate([log_prior.ravel(), truth_log_prior.ravel()]),
                                  [1, 99])
        panels = ((np.abs(image - truth), "|error| (HU)", (0, 200), "magma"),
                  (log_prior, f"log-prior map, r={record['pearson']:.2f}, "
                              f"ρ={record['spearman']:.2f}", limits, "viridis"),
                  (truth_log_prior, "log-prior map of the reference", limits, "viridis"))
        for axis, (panel, title, (low, high), cmap) in zip(axes[row], panels, strict=True):
            shown = axis.imshow(panel, cmap=cmap, vmin=low, vmax=high)
            axis.set_title(f"{scene}: {title}" if axis is axes[row, 0] else title, fontsize=7)
            axis.axis("off")
            figure.colorbar(shown, ax=axis, fraction=0.046)
    figure.suptitle(f"{method}, {photons:g} photons: error vs {config.log_prior} log-prior map "
                    "(nats/pixel; r Pearson, ρ Spearman inside the object)", fontsize=9)
    return figure


def _implausibility(case_arrays, references, results, config):
    """For each family, its first scene at the lowest dose, reconstructed by the first method
    with the implausibility's prior (else the first PnP method): the image, its |error| and
    its implausibility with the regions above the case's threshold outlined."""
    methods = ([m for m in config.methods if m.prior == config.implausibility]
               or [m for m in config.methods if m.prior is not None] or list(config.methods))
    method, photons = methods[0].name, min(config.photons)
    families = list(dict.fromkeys(s.family for s in config.scenes))
    figure, axes = subplots(len(families), 3, squeeze=False, figsize=(9.0, 2.7 * len(families)))
    window = {"cmap": "gray", "vmin": SOFT_TISSUE_WINDOW.low_hu,
              "vmax": SOFT_TISSUE_WINDOW.high_hu}
    for row, family in enumerate(families):
        scene = next(s.name for s in config.scenes if s.family == family)
        record = _find(results, scene=scene, photons=photons, method=method)
        reference = _find(references, scene=scene)
        for axis in axes[row]:
            axis.axis("off")
        if record is None or reference is None:
            continue
        image, _, z_map = case_arrays(record["id"])
        threshold = record["implausibility_threshold_z"]
        axes[row, 0].imshow(image, **window)
        axes[row, 0].set_title(f"{scene}: {record['psnr_soft_db']:.1f} dB soft tissue",
                               fontsize=7)
        error = axes[row, 1].imshow(np.abs(image - case_arrays(reference["id"])[0]),
                                    cmap="magma", vmin=0, vmax=200)
        axes[row, 1].set_title(f"|error| (HU), {record['failed_regions']} of "
                               f"{record['implausibility_regions']} regions failed", fontsize=7)
        figure.colorbar(error, ax=axes[row, 1], fraction=0.046)
        axes[row, 2].imshow(image, **window)
        finite = z_map[np.isfinite(z_map)]
        top = max(float(finite.max()) if finite.size else 0.0, threshold + 1.0)
        overlay = axes[row, 2].imshow(np.ma.masked_invalid(z_map), cmap="magma", alpha=0.55,
                                      vmin=-3.0, vmax=top, interpolation="nearest")
        above = np.pad(np.nan_to_num(z_map, nan=-np.inf) > threshold, 1)  # closed at edges
        if above.any():
            height, width = z_map.shape
            axes[row, 2].contour(np.arange(-1, width + 1), np.arange(-1, height + 1),
                                 above.astype(float), levels=[0.5], colors="red",
                                 linewidths=1.0)
            axes[row, 2].set_xlim(-0.5, width - 0.5)
            axes[row, 2].set_ylim(height - 0.5, -0.5)
        axes[row, 2].set_title(f"implausibility z: score {record['implausibility_score_z']:.2f}"
                               f", threshold {threshold:.2f}, AUROC "
                               f"{record['implausibility_auroc']:.2f}", fontsize=7)
        figure.colorbar(overlay, ax=axes[row, 2], fraction=0.046)
    figure.suptitle(f"{method}, {photons:g} photons: window [{SOFT_TISSUE_WINDOW.low_hu:g}, "
                    f"{SOFT_TISSUE_WINDOW.high_hu:g}] HU, |error|, {config.implausibility} "
                    "implausibility (regions above the threshold outlined red)", fontsize=9)
    return figure


def _find(records, **match) -> dict | None:
    return next((r for r in records if all(r[k] == v for k, v in match.items())), None)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    return save_png(figure, path, dpi=100)
