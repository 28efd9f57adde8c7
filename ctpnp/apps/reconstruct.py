"""A DICOM-CT-PD folder in, a reconstructed study out: what ``ctpnp reconstruct`` does.

Input: one DICOM-CT-PD scan (axial, or helical rebinned to fan slices) or the
``slice_NNNN/`` folders ``ctpnp simulate`` writes; see :mod:`ctpnp.io.scan_input`
for the layouts and the image grid. Output, in ``OUT_DIR``:

* ``dicom/``: a derived CT series in HU (:func:`ctpnp.io.write_ct_series`);
* ``volume.nii.gz``: the same volume in HU (float32, RAS affine);
* ``log_prior.nii.gz`` and ``log_prior.png``: the prior's per-pixel
  log-prior map (nats per pixel, larger = less plausible) when a PnP method
  runs with a prior that has one (``lpn``, ``prox``, ``tv``);
* ``implausibility.nii.gz``, ``implausibility/`` (a DICOM series to overlay) and
  ``implausibility.png``: the calibrated quality indicator
  (:mod:`ctpnp.quality.indicator`, z per 16-pixel region, NaN or 0 in DICOM
  outside the body), when the prior has a calibration for its current weights;
  the PNG outlines the flagged regions of the slice with the highest score;
* ``report.json``: method, prior, every solver parameter, the grid, per-slice
  iterations, convergence, divergence, log-prior summary and quality verdict
  (score, flag, threshold, flagged regions), timings,
  package versions, the input's warnings and how its private tags were stored.

The DICOM series joins the scan's study: patient, study, dates, kVp and
patient position are copied from the raw data's header (and, with
``grid_like``, from the reference series, which also gives the frame of
reference), with new series and instance UIDs, ImageType DERIVED and each
slice referring to the first and last view it came from. ``anonymize`` keeps
only the acquisition attributes (patient position, body part, kVp).
``orientation_check`` judges whether the images look upright for the patient
position (:mod:`ctpnp.apps.orientation`), for raw data whose conventions
cannot be told.

Slices are reconstructed by :func:`ctpnp.apps.volume.reconstruct_volume` into
``OUT_DIR/.work/``, one finished slice at a time, so a re-run after Ctrl-C or
a kill resumes from the finished slices. The final files are written into
``OUT_DIR/.work/final/`` and moved into ``OUT_DIR`` only when all are written,
``report.json`` last; the work folder is then removed. ``OUT_DIR`` thus never
holds a half-written final file, and holds ``report.json`` only when complete.

A slice whose iteration diverged is not an image: it is NaN in
``volume.nii.gz``, air (-1000 HU) in ``dicom/`` (its DerivationDescription
names such slices) and listed in ``report.json``.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ctpnp import physics
from ctpnp.apps.orientation import check_orientation
from ctpnp.apps.progress import Progress
from ctpnp.apps.volume import reconstruct_volume
from ctpnp.figures.log_prior import log_prior_figure
from ctpnp.figures.quality import flagged_regions_figure
from ctpnp.io import (
    Grid,
    Scan,
    acquisition_grid,
    identity_of,
    read_ct_series,
    read_scan,
    reference_grid,
    slice_z_mm,
    write_ct_series,
    write_map_series,
    write_nifti,
)
from ctpnp.priors.registry import fingerprint
from ctpnp.projector.backend import resolve_device
from ctpnp.quality import Calibration, load_calibration
from ctpnp.quality.volume import VolumeQuality, volume_quality
from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR, METHODS, PNP_METHODS, PRIORS, solver
from ctpnp.versions import package_versions

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Report", "reconstruct_scan"]

WORK_DIR = ".work"
REPORT_NAME = "report.json"
NOT_SETTINGS = ("weights", "x0", "callback")
"""Solver keywords that pass data or hooks, not settings: left out of the report."""
DIVERGED_HU = -1000.0
"""What a diverged slice holds in the DICOM series (air), which cannot store NaN."""
CUDA_BATCH = 8
"""Slices per solver call on CUDA by default: one projector call and one network pass
serve the batch (issue 18's GPU goal is stated for a batch of 8)."""


@dataclass(frozen=True)
class Report:
    """What a reconstruction wrote and how it went.

    Attributes:
        out_dir: the study folder. files: the final outputs, ``report.json`` last.
        n_slices: slices in the volume. resumed: slices found finished from an
            earlier, interrupted run. diverged: 1-based numbers of diverged slices.
        content: the JSON written to ``report.json``.
        warnings: the input's soft plausibility findings and a suspicious
            orientation, one line each.
    """

    out_dir: Path
    files: list[Path]
    n_slices: int
    resumed: int
    diverged: list[int]
    content: dict
    warnings: list[str]


def reconstruct_scan(
    input_dir: Path | str,
    out_dir: Path | str,
    *,
    method: str = DEFAULT_METHOD,
    prior: str = DEFAULT_PRIOR,
    iterations: int | None = None,
    grid_like: Path | str | None = None,
    size: int | None = None,
    pixel_mm: float | None = None,
    device: str = "cpu",
    workers: int = 1,
    batch_size: int | None = None,
    anonymize: bool = False,
    orientation_check: bool = False,
    progress: Progress | None = None,
    on_iteration: Callable[[], object] | None = None,
) -> Report:
    """Reconstruct the scan in ``input_dir`` into a study in ``out_dir`` (see the module docstring).

    Args:
        input_dir: a DICOM-CT-PD scan or ``ctpnp simulate`` output.
        out_dir: the study folder: new, empty, or an interrupted run's (resumed).
        method: a name of :data:`ctpnp.registry.METHODS`.
        prior: registry name or ``.safetensors`` path (PnP methods only).
        iterations: the solver's ``max_iter``; default the solver's (not for FBP).
        grid_like: a CT series whose grid (shape, pixels, position, orientation,
            slice positions) the images take; without it, :func:`acquisition_grid`
            with ``size`` (pixels per side) and ``pixel_mm`` (mm).
        device: ``"cpu"`` or ``"cuda"``. workers: CPU worker processes.
        batch_size: slices per solver call; default :data:`CUDA_BATCH` on CUDA, 1 on
            the CPU (where ``workers`` parallelize).
        anonymize: leave patient and study identity out of the DICOM series.
        orientation_check: judge whether the images look upright (report and warnings).
        progress: ``progress(slices_done, slices_total)``, see :func:`reconstruct_volume`.
        on_iteration: called after each solver iteration, see :func:`reconstruct_volume`.

    Raises:
        DicomInputError: unreadable input (names the file and the tag).
        ValueError: bad options, a finished or foreign ``out_dir``, or an
            unknown prior; RuntimeError: CUDA requested but unavailable.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    params = _options(method, iterations, grid_like, size, pixel_mm)
    on_cuda = resolve_device(device).type == "cuda"
    if batch_size is None:
        batch_size = CUDA_BATCH if on_cuda else 1
    prior_model = _load_prior(method, prior, device)
    _check_out_dir(out_dir)

    reference = None if grid_like is None else read_ct_series(grid_like)
    scan = read_scan(input_dir, None if reference is None else slice_z_mm(reference))
    grid = (acquisition_grid(scan, size, pixel_mm) if reference is None
            else reference_grid(reference, scan))
    geometry = scan.geometry(grid.image_shape, grid.pixel_mm)
    read_s = time.perf_counter() - start

    work = out_dir / WORK_DIR
    result = reconstruct_volume(scan.sinograms, geometry, work / "slices", method=method,
                                prior=prior, params=params, batch_size=batch_size,
                                workers=workers, device=device, progress=progress,
                                on_iteration=on_iteration)
    reconstruct_s = time.perf_counter() - start - read_s
    mu_water = scan.acquisition.mu_water_per_mm
    hu = physics.mu_to_hu(torch.from_numpy(np.array(result.volume)), mu_water).numpy()
    calibration, calibration_note = _calibration(prior_model, prior)
    quality = (None if prior_model is None
               else volume_quality(result.volume, scan.sinograms, geometry, prior_model,
                                   calibration, work / "quality", device))
    log_prior = None if quality is None else quality.log_prior
    log_prior_s = time.perf_counter() - start - read_s - reconstruct_s

    identity = identity_of(scan.header, *([] if grid.like is None else grid.like.datasets[:1]),
                           anonymize=anonymize)
    warnings = list(scan.warnings)
    orientation = None
    if orientation_check:
        orientation = check_orientation(hu, str(identity.get("PatientPosition", "")))
        if orientation.verdict not in ("upright",):
            warnings.append(f"{input_dir}: {orientation.message}")
    diverged = [int(k) + 1 for k in np.flatnonzero(result.diverged)]
    content = {
        "input": str(input_dir), "output": str(out_dir), "layout": scan.layout,
        "method": method, "prior": prior if method in PNP_METHODS else None,
        "parameters": _parameters(method, params), "device": str(resolve_device(device)),
        "workers": workers, "batch_size": batch_size,
        "grid": {"shape": list(hu.shape), "pixel_mm": grid.pixel_mm,
                 "affine_ras_mm": grid.affine.tolist(),
                 "from": str(grid_like) if grid_like is not None else "acquisition"},
        "slices": _slice_records(scan, result, log_prior,
                                 None if quality is None else quality.verdicts),
        "resumed_slices": int((~result.computed).sum()),
        "diverged_slices": diverged,
        "anonymized": anonymize,
        "input_value_types": scan.value_types,
        "warnings": warnings,
        "versions": package_versions(),
    }
    if orientation is not None:
        content["orientation_check"] = {"verdict": orientation.verdict,
                                        "slice": orientation.slice_index + 1,
                                        "flatness": orientation.flatness,
                                        "message": orientation.message}
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    written, ct_files = _write_outputs(final, hu, log_prior, grid, method, prior, diverged,
                                       identity, scan.sources)
    if quality is not None and quality.implausibility is not None:
        written += _write_quality(final, hu, quality, calibration, grid, prior, ct_files)
    if calibration_note is not None:
        content["quality_indicator"] = calibration_note
    content["timings_s"] = {"read": read_s, "reconstruct": reconstruct_s,
                            "log_prior": log_prior_s,
                            "total": time.perf_counter() - start}
    (final / REPORT_NAME).write_text(json.dumps(content, indent=2))
    files = _move_into_place(final, [*written, REPORT_NAME], out_dir)
    shutil.rmtree(work)
    return Report(out_dir, files, len(hu), content["resumed_slices"], diverged, content,
                  warnings)



def _options(method: str, iterations: int | None, grid_like: Path | str | None,
             size: int | None, pixel_mm: float | None) -> dict:
    """The solver keyword arguments; raises ``ValueError`` for options that do not fit."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown: expected one of {list(METHODS)}")
    if grid_like is not None and (size is not None or pixel_mm is not None):
        raise ValueError("--grid-like takes shape and pixel size from the reference series: "
                         "leave out --size and --pixel-mm")
    if iterations is None:
        return {}
    if method == "fbp":
        raise ValueError("--iterations does not apply to fbp (not iterative)")
    if iterations < 1:
        raise ValueError(f"--iterations={iterations}: need at least 1")
    return {"max_iter": iterations}


def _load_prior(method: str, prior: str, device: str):
    """The prior object of a PnP method (checks a prior file before any work); else ``None``."""
    if method not in PNP_METHODS:
        return None
    from ctpnp.priors import load

    return load(prior, device=device)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a finished study and a non-empty folder that is not an interrupted run's."""
    if (out_dir / REPORT_NAME).exists():
        raise ValueError(f"{out_dir}: holds a finished reconstruction ({REPORT_NAME}); "
                         "choose a new output folder")
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / WORK_DIR).is_dir())):
        raise ValueError(f"{out_dir}: exists and is not empty (nor an interrupted "
                         "reconstruction to resume)")


def _parameters(method: str, overrides: dict) -> dict:
    """Every scalar keyword of the method with the value used (defaults, then ``overrides``).

    ``data_weight: null`` means estimated from the data for each slice.
    """
    scalars = (bool, int, float, str, type(None))
    defaults = {name: p.default for name, p in inspect.signature(solver(method)).parameters.items()
                if p.default is not inspect.Parameter.empty and isinstance(p.default, scalars)
                and name not in NOT_SETTINGS}
    return {**defaults, **overrides}


def _calibration(prior_model, prior: str) -> tuple[Calibration | None, str | None]:
    """The quality calibration of a PnP prior, or ``None`` and why (for the report)."""
    if prior_model is None:
        return None, None
    if prior not in PRIORS:
        return None, f"no calibration for prior file {prior}: run pipelines/calibrate/quality.py"
    try:
        return load_calibration(prior, fingerprint(prior)), None
    except ValueError as err:
        return None, str(err)


def _slice_records(scan: Scan, result, log_prior: np.ndarray | None,
                   verdicts: list | None = None) -> list[dict]:
    """Per slice: position, iterations, convergence, divergence, resumed, log-prior summary,
    quality verdict."""
    records = []
    for k, z in enumerate(scan.z_mm):
        record = {"slice": k + 1, "z_mm": float(z), "iterations": int(result.n_iter[k]),
                  "converged": bool(result.converged[k]), "diverged": bool(result.diverged[k]),
                  "resumed": not bool(result.computed[k])}
        if log_prior is not None and np.isfinite(log_prior[k]).all():
            p5, p50, p95 = np.percentile(log_prior[k], [5, 50, 95])
            record["log_prior_nats_per_pixel"] = {
                "mean": float(log_prior[k].mean()), "p5": float(p5), "p50": float(p50),
                "p95": float(p95)}
        if verdicts is not None and verdicts[k] is not None:
            record["quality"] = verdicts[k].to_dict()
        records.append(record)
    return records


def _write_outputs(folder: Path, hu: np.ndarray, log_prior: np.ndarray | None, grid: Grid,
                   method: str, prior: str, diverged: list[int], identity: Dataset,
                   sources: list[list[tuple[str, str]]]) -> tuple[list[str], list[Path]]:
    """Write the DICOM series, NIfTI volume and log-prior map into ``folder``: their names,
    and the series' files in slice order."""
    label = f"ctpnp {method}" + (f" prior={prior}" if method in PNP_METHODS else "")
    derivation = label + (f"; diverged slices (air): {diverged}" if diverged else "")
    filled = np.where(np.isfinite(hu), hu, DIVERGED_HU)
    geometry = {"like": grid.like} if grid.like is not None else {"affine": grid.affine}
    ct_files = write_ct_series(filled, folder / "dicom", description=label,
                               derivation=derivation, identity=identity,
                               sources=sources or None, **geometry)
    write_nifti(hu, grid.affine, folder / "volume.nii.gz", description=label)
    names = ["dicom", "volume.nii.gz"]
    if log_prior is not None:
        write_nifti(log_prior, grid.affine, folder / "log_prior.nii.gz",
                    description=f"{label} log-prior nats/pixel")
        log_prior_figure(hu, log_prior, folder / "log_prior.png", label)
        names += ["log_prior.nii.gz", "log_prior.png"]
    return names, ct_files


def _write_quality(folder: Path, hu: np.ndarray, quality: VolumeQuality,
                   calibration: Calibration, grid: Grid, prior: str,
                   ct_files: list[Path]) -> list[str]:
    """Write the implausibility as NIfTI, as a DICOM series (0 outside the body) that
    overlays the reconstruction's ``ct_files`` (same study and frame, each slice naming
    its source), and the flagged regions of the highest-scoring slice as PNG into
    ``folder``; their names."""
    label = f"ctpnp implausibility z prior={prior} judge={calibration.judge}"
    z = quality.implausibility
    write_nifti(z, grid.affine, folder / "implausibility.nii.gz", description=label)
    geometry = {"like": grid.like} if grid.like is not None else {"affine": grid.affine}
    thresholds = [v.threshold_z for v in quality.verdicts if v is not None]
    threshold_note = (f"flag threshold {min(thresholds):.2f}-{max(thresholds):.2f} (per slice, "
                      "report.json)" if thresholds else "no slice scored")
    write_map_series(np.nan_to_num(z, nan=0.0), folder / "implausibility", description=label,
                     derivation=f"{label}; {threshold_note}; 0 = not scored",
                     overlay_on=ct_files,
                     **geometry)
    scores = [-np.inf if v is None else v.score for v in quality.verdicts]
    k = int(np.argmax(scores))
    regions = z[k, ::calibration.region_px, ::calibration.region_px]
    verdict = quality.verdicts[k]  # None only when no slice was scored
    threshold = calibration.doses[0].threshold_z if verdict is None else verdict.threshold_z
    flagged_regions_figure(hu[k], regions, threshold, calibration.region_px,
                           folder / "implausibility.png", f"slice {k + 1}: {label}")
    return ["implausibility.nii.gz", "implausibility", "implausibility.png"]


def _move_into_place(staging: Path, names: list[str], out_dir: Path) -> list[Path]:
    """Rename each finished output into ``out_dir`` (replacing an interrupted run's), in order."""
    moved = []
    for name in names:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        (staging / name).replace(target)
        moved.append(target)
    return moved
