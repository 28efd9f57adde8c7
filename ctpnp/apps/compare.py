"""Image quality of reconstructions against a reference series: PSNR, SSIM, RMSE in HU.

Every metric is computed per slice in each window of :data:`ctpnp.quality.WINDOWS` (images
clipped to the window, data range = window width; see :mod:`ctpnp.quality`).
Overall values: RMSE over all voxels (the root of the mean per-slice squared
error), PSNR from that RMSE, SSIM the mean of the slices' SSIM.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctpnp.atomic import staged_file
from ctpnp.figures.comparison import comparison_figure
from ctpnp.io import read_ct_series, read_nifti
from ctpnp.quality import REGION_PX, WINDOWS, Window, region_rmse_hu, window_scores
from ctpnp.quality.detection import FAILED_RMSE_HU, detection_scores

__all__ = ["Comparison", "Volume", "WindowScores", "compare", "format_table",
           "indicator_scores", "load_volume", "score", "write_outputs"]

AFFINE_TOLERANCE_MM = 0.01
"""Largest difference (mm) between affine entries still counted as one geometry."""


@dataclass(frozen=True)
class Volume:
    """A HU volume with its geometry.

    Attributes:
        name: label in tables and figures. path: the folder it was read from.
        hu: ``(slices, H, W)`` float32 HU. affine: (4, 4) voxel → RAS mm.
        log_prior: ``(slices, H, W)`` log-prior map, or ``None``.
        implausibility_z: ``(slices, H, W)`` calibrated implausibility (z, constant
            over each scored region of :data:`ctpnp.quality.REGION_PX`² pixels, NaN
            where not scored), or ``None``.
    """

    name: str
    path: Path
    hu: np.ndarray
    affine: np.ndarray
    log_prior: np.ndarray | None = None
    implausibility_z: np.ndarray | None = None


@dataclass(frozen=True)
class WindowScores:
    """Per-slice metrics of one reconstruction in one window; each array ``(slices,)``."""

    window: Window
    psnr_db: np.ndarray
    ssim: np.ndarray
    rmse_hu: np.ndarray

    def overall(self) -> dict[str, float]:
        """PSNR (dB), SSIM and RMSE (HU) of the whole volume (see the module docstring)."""
        rmse = float(np.sqrt(np.mean(self.rmse_hu**2)))
        return {"psnr_db": 20 * math.log10(self.window.width_hu / max(rmse, 1e-12)),
                "ssim": float(np.mean(self.ssim)), "rmse_hu": rmse}


@dataclass(frozen=True)
class Comparison:
    """A reference, the reconstructions, ``scores[i][window name]`` of reconstruction i and
    ``indicators[i]``, how well its implausibility map finds its errors
    (:func:`indicator_scores`; ``None`` without a map)."""

    reference: Volume
    reconstructions: list[Volume]
    scores: list[dict[str, WindowScores]]
    indicators: list[dict[str, float] | None]


def load_volume(folder: Path | str, name: str | None = None) -> Volume:
    """``folder/volume.nii.gz`` if present, else the folder's CT series (DICOM).

    ``folder/log_prior.nii.gz`` and ``folder/implausibility.nii.gz`` (written by
    ``ctpnp reconstruct``), if present, become :attr:`Volume.log_prior` and
    :attr:`Volume.implausibility_z`.

    Raises:
        DicomInputError: the folder is missing, empty, or holds neither.
        ValueError: a map's shape differs from the volume's (naming the map).
    """
    folder = Path(folder)
    nifti = folder / "volume.nii.gz"
    if nifti.is_file():
        hu, affine = read_nifti(nifti)
    else:
        series = read_ct_series(folder)
        hu, affine = series.hu, series.affine
    maps = [_map_beside(folder / name, hu.shape)
            for name in ("log_prior.nii.gz", "implausibility.nii.gz")]
    return Volume(name or folder.name, folder, hu, np.asarray(affine, dtype=np.float64), *maps)


def _map_beside(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The NIfTI map at ``path`` (``None`` when absent), checked against the volume's shape."""
    if not path.is_file():
        return None
    values = read_nifti(path)[0]
    if values.shape != shape:
        raise ValueError(f"{path}: shape {values.shape} differs from the volume's {shape}")
    return values


def indicator_scores(volume: Volume, reference: Volume) -> dict[str, float] | None:
    """How well ``volume``'s implausibility detects its own failed regions against
    ``reference`` (:func:`ctpnp.quality.detection.detection_scores` over the scored
    regions of all slices); ``None`` without a map."""
    if volume.implausibility_z is None:
        return None
    z = volume.implausibility_z[:, ::REGION_PX, ::REGION_PX]
    rmse = region_rmse_hu(torch.from_numpy(volume.hu)[:, None],
                          torch.from_numpy(reference.hu)[:, None], REGION_PX)[:, 0].numpy()
    return detection_scores(z, rmse)


def score(volume: Volume, reference: Volume) -> dict[str, WindowScores]:
    """Per-slice metrics of ``volume`` against ``reference`` in every measurement window.

    Raises:
        ValueError: shapes or affines differ (naming both).
    """
    if volume.hu.shape != reference.hu.shape:
        raise ValueError(f"{volume.path}: shape {volume.hu.shape} (slices, rows, columns) "
                         f"differs from the reference's {reference.hu.shape}")
    difference = np.abs(volume.affine - reference.affine).max()
    if difference > AFFINE_TOLERANCE_MM:
        raise ValueError(f"{volume.path}: affine differs from the reference's by up to "
                         f"{difference:.3g} mm (not the same voxel grid)")
    hu = torch.from_numpy(volume.hu)[:, None]
    ref = torch.from_numpy(reference.hu)[:, None]
    return {name: WindowScores(WINDOWS[name], scores["psnr_db"].numpy(),
                               scores["ssim"].numpy(), scores["rmse_hu"].numpy())
            for name, scores in window_scores(hu, ref).items()}


def compare(recon_dirs: list[Path], reference_dir: Path) -> Comparison:
    """Load the reference and each reconstruction folder and score them (see :func:`score`)."""
    reference = load_volume(reference_dir, "reference")
    names = [Path(d).name or str(d) for d in recon_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in recon_dirs]
    volumes = [load_volume(d, n) for d, n in zip(recon_dirs, names, strict=True)]
    return Comparison(reference, volumes, [score(v, reference) for v in volumes],
                      [indicator_scores(v, reference) for v in volumes])


def rows(result: Comparison) -> list[dict[str, object]]:
    """One row per reconstruction, window and slice (``slice`` = ``"all"`` for overall)."""
    table = []
    for volume, scores in zip(result.reconstructions, result.scores, strict=True):
        for name, s in scores.items():
            common = {"reconstruction": volume.name, "window": name,
                      "low_hu": s.window.low_hu, "high_hu": s.window.high_hu,
                      "data_range_hu": s.window.width_hu}
            table.append({**common, "slice": "all", **s.overall()})
            table.extend({**common, "slice": k, "psnr_db": float(s.psnr_db[k]),
                          "ssim": float(s.ssim[k]), "rmse_hu": float(s.rmse_hu[k])}
                         for k in range(s.psnr_db.size))
    return table


def format_table(result: Comparison) -> str:
    """The overall metrics as an aligned text table, windows stated in the header."""
    lines = [f"reference: {result.reference.path} ({result.reference.hu.shape[0]} slices); "
             + "; ".join(f"{n} window [{w.low_hu:g}, {w.high_hu:g}] HU, data range "
                         f"{w.width_hu:g} HU" for n, w in WINDOWS.items())]
    width = max(14, *(len(v.name) for v in result.reconstructions))
    lines.append(f"{'reconstruction':{width}s} {'window':12s} {'PSNR dB':>8s} {'SSIM':>7s} "
                 f"{'RMSE HU':>8s}")
    for row in rows(result):
        if row["slice"] == "all":
            lines.append(f"{row['reconstruction']:{width}s} {row['window']:12s} "
                         f"{row['psnr_db']:8.2f} {row['ssim']:7.4f} {row['rmse_hu']:8.2f}")
    for volume, check in zip(result.reconstructions, result.indicators, strict=True):
        if check is not None:
            lines.append(f"implausibility of {volume.name} vs its error: AUROC "
                         f"{check['auroc']:.2f} for the {check['failed_regions']} of "
                         f"{check['regions']} regions above {FAILED_RMSE_HU:g} HU RMSE, "
                         f"Spearman {check['spearman']:.2f}")
    return "\n".join(lines)


def to_json(result: Comparison) -> dict[str, object]:
    """Everything as JSON-ready values: windows, reference, per-reconstruction results."""
    return {
        "reference": str(result.reference.path),
        "shape": list(result.reference.hu.shape),
        "windows": {n: {"low_hu": w.low_hu, "high_hu": w.high_hu, "data_range_hu": w.width_hu}
                    for n, w in WINDOWS.items()},
        "overall_definition": "RMSE over all voxels, PSNR from it, SSIM mean over slices",
        "implausibility_vs_error_definition": (
            f"regions of {REGION_PX}x{REGION_PX} px scored by the implausibility map; failed = "
            f"region RMSE > {FAILED_RMSE_HU:g} HU; AUROC of z for failed regions, Spearman "
            "between z and region RMSE"),
        "reconstructions": [
            {"name": volume.name, "path": str(volume.path),
             "metrics": {n: {"overall": s.overall(), "psnr_db": s.psnr_db.tolist(),
                             "ssim": s.ssim.tolist(), "rmse_hu": s.rmse_hu.tolist()}
                         for n, s in scores.items()},
             "implausibility_vs_error": check}
            for volume, scores, check in zip(result.reconstructions, result.scores,
                                             result.indicators, strict=True)],
    }


def write_outputs(result: Comparison, out_dir: Path | str) -> list[Path]:
    """Write ``metrics.csv``, ``metrics.json`` and ``comparison.png`` (each atomically)."""
    out_dir = Path(out_dir)
    table = rows(result)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    written = []
    for name, text in (("metrics.csv", buffer.getvalue()),
                       ("metrics.json", json.dumps(to_json(result), indent=2))):
        with staged_file(out_dir / name) as temporary:
            temporary.write_text(text)
        written.append(out_dir / name)
    written.append(comparison_figure(result, out_dir / "comparison.png"))
    return written
