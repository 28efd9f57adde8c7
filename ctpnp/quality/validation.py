"""The validation scans the quality indicator is calibrated, chosen and measured on.

Slices of the corpus's validation patients only (:data:`ctpnp.data.SPLITS`,
never a training patient), resampled to the priors' 0.8 mm pixels
(:data:`ctpnp.evaluation.PIXEL_MM`) and centre-cropped to the grid, then
scanned from a grid twice as fine (:func:`ctpnp.simulation.clean_projection`)
with Poisson noise. The calibration and the benchmark use disjoint slices:
:data:`CALIBRATION_SLICES` and :data:`BENCHMARK_SLICES`. Reconstructions are
PnP-ADMM with the prior's default parameters, run to its own stopping rule.

:func:`quality_cases` builds the clean and failed scans of one of
:data:`SLICE_SETS`: ``calibration`` (where a definition or a judge is chosen)
or ``benchmark`` (where the indicator is measured, never chosen on). Failure
kinds (:data:`FAILURE_KINDS`), on three slices each at
:data:`FAILURE_PHOTONS`:

* ``metal``: a 3 mm radius insert of μ = 0.5/mm (photon starvation behind it);
* ``bubble``: a 5 mm radius air bubble in soft tissue;
* ``lesion``: a 10 mm radius lesion with a foreign texture (a 2-pixel checkerboard
  of ±200 HU around 60 HU);
* ``views60``: the clean slice scanned with 60 views;
* ``overreg``: the clean slice reconstructed with 4 times the prior's denoiser σ;
* ``phantom``: random-anatomy phantoms, prior mismatch;

and ``clean``: every slice of the set at 10⁴ and 10⁵ photons.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ctpnp import physics
from ctpnp.data import SPLITS, load_patient
from ctpnp.data.slices import fit_to_size, resample_slice
from ctpnp.evaluation import DOSES, PIXEL_MM, VALIDATION_SEEDS
from ctpnp.phantoms import random_anatomy
from ctpnp.projector import Tomography
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.simulation import clean_projection, phantom_scan
from ctpnp.solvers import SolverResult, pnp_admm
from ctpnp.solvers.common import pnp_settings

__all__ = ["BENCHMARK_SLICES", "CALIBRATION_SLICES", "FAILURE_KINDS", "FAILURE_PHOTONS",
           "SLICE_SETS", "QualityCase", "corpus_slice_hu", "geometry", "operator", "quality_cases",
           "reconstruct", "reconstruct_case", "scan"]

CALIBRATION_SLICES: dict[str, tuple[int, ...]] = {"lung2": tuple(range(0, 61, 2)),
                                                   "head_hitachi": (0,)}
"""Validation slices (patient: slice indices, feet to head) the calibration is made on:
lung2's even slices (32, so that a 2 % flag rate per dose rests on more than a handful of
scores) and a head slice."""
BENCHMARK_SLICES: dict[str, tuple[int, ...]] = {"lung2": tuple(range(1, 61, 2)),
                                                 "head_ge": (0,)}
"""Other validation slices, those the benchmark builds its cases from: lung2's odd slices
(30, so that a clean flag rate of a few per cent is measured on more than a handful) and
the other head."""


def geometry(size: int = 256, views: int = 360) -> ScanGeometry:
    """The clinical fan on ``size``² pixels of :data:`~ctpnp.evaluation.PIXEL_MM` mm."""
    return ScanGeometry.clinical_fan((size, size), PIXEL_MM, views)


@functools.cache
def operator(size: int = 256, views: int = 360) -> Tomography:
    """The forward model of :func:`geometry` ``(size, views)``, built once per process."""
    return Tomography(geometry(size, views))


def corpus_slice_hu(patient: str, index: int, size: int = 256) -> torch.Tensor:
    """Slice ``index`` of validation patient ``patient`` as ``(1, 1, size, size)`` HU.

    Raises ``ValueError`` for a patient outside the validation split or a slice it lacks.
    """
    if patient not in SPLITS["validation"]:
        raise ValueError(f"patient {patient!r} is not a validation patient "
                         f"({SPLITS['validation']})")
    volume = load_patient(patient)
    if not 0 <= index < len(volume.hu):
        raise ValueError(f"patient {patient!r} has slices 0..{len(volume.hu) - 1}, not {index}")
    hu = resample_slice(np.asarray(volume.hu[index], dtype=np.float32), volume.pixel_mm,
                        PIXEL_MM)
    return torch.from_numpy(fit_to_size(hu, size).clip(-1000.0, None))[None, None]


def scan(reference_hu: torch.Tensor, geometry: ScanGeometry, photons: float, seed: int = 0
         ) -> torch.Tensor:
    """Noisy post-log data ``(1, 1, views, channels)`` of ``reference_hu`` ``(1, 1, H, W)``."""
    return physics.simulate_low_dose(clean_projection(reference_hu, geometry), photons,
                                     seed=seed)


def reconstruct(y: torch.Tensor, op: Tomography, prior, **settings) -> SolverResult:
    """PnP-ADMM with the prior's defaults and stopping rule (``settings`` override them,
    e.g. ``sigma_mu_per_mm``); ``.x`` is ``(B, 1, H, W)`` μ (1/mm)."""
    return pnp_admm(y, op, prior, **settings)


def reconstruct_case(case: QualityCase, op: Tomography, prior
                     ) -> tuple[torch.Tensor, float | torch.Tensor]:
    """:func:`reconstruct` of ``case.y`` (``op`` with ``case.views`` views), with its
    ``sigma_scale`` applied: the image ``(1, 1, H, W)`` μ (1/mm) and the denoiser σ (1/mm)
    it was made with."""
    sigma, _ = pnp_settings(prior, "pnp-admm", case.y, None, None)
    if case.sigma_scale == 1.0:
        return reconstruct(case.y, op, prior).x, sigma
    sigma = sigma * case.sigma_scale
    return reconstruct(case.y, op, prior, sigma_mu_per_mm=sigma).x, sigma


FAILURE_PHOTONS = 1e5
FAILURE_KINDS = ("metal", "bubble", "lesion", "views60", "overreg", "phantom")
SLICE_SETS = {
    "benchmark": {"failure": (("lung2", 15), ("lung2", 45), ("head_ge", 0)),
                  "clean": BENCHMARK_SLICES, "phantoms": (*VALIDATION_SEEDS, 5002)},
    "calibration": {"failure": (("lung2", 14), ("lung2", 44), ("head_hitachi", 0)),
                    "clean": CALIBRATION_SLICES, "phantoms": (5003, 5004)},
}
"""Each set's slices with failures, clean slices and phantom seeds: ``benchmark`` measures the
indicator; ``calibration`` (the slices the statistics are fitted on, other phantoms) is where
a change of its definition or judge is chosen."""
METAL_MU_PER_MM, METAL_RADIUS_MM = 0.5, 3.0
BUBBLE_RADIUS_MM, LESION_RADIUS_MM = 5.0, 10.0
SPARSE_VIEWS = 60
OVERREG_SIGMA_SCALE = 4.0


@dataclass(frozen=True)
class QualityCase:
    """One scan of a quality set: ``kind`` (``clean`` or one of :data:`FAILURE_KINDS`),
    ``name`` (``patient:slice`` or ``seed N``), ``photons`` per reading, the truth
    ``reference_hu`` ``(1, 1, H, W)`` HU, the post-log data ``y`` ``(1, 1, views,
    channels)`` taken with ``views`` views, and ``sigma_scale``: the factor on the prior's
    default denoiser σ to reconstruct with (4 for ``overreg``, else 1)."""

    kind: str
    name: str
    photons: float
    reference_hu: torch.Tensor
    y: torch.Tensor
    views: int
    sigma_scale: float = 1.0


def quality_cases(slice_set: str, size: int = 256, views: int = 360) -> Iterator[QualityCase]:
    """The cases of :data:`SLICE_SETS` ``[slice_set]`` on ``size``² pixels (see the module
    docstring): first the clean slices at every dose, then per failure slice its kinds, then
    the phantoms. Built one at a time, so a caller can report progress."""
    chosen = SLICE_SETS[slice_set]
    clean = [(patient, k) for patient, indices in chosen["clean"].items() for k in indices]
    full = geometry(size, views)
    for patient, index in clean:
        reference_hu = corpus_slice_hu(patient, index, size)
        for photons in DOSES.values():
            yield QualityCase("clean", f"{patient}:{index}", photons, reference_hu,
                              scan(reference_hu, full, photons, seed=index), views)
    for number, (patient, index) in enumerate(chosen["failure"]):
        name, reference_hu = f"{patient}:{index}", corpus_slice_hu(patient, index, size)
        for kind in ("metal", "bubble", "lesion"):
            altered = _insert(kind, reference_hu, seed=number)
            yield QualityCase(kind, name, FAILURE_PHOTONS, altered,
                              scan(altered, full, FAILURE_PHOTONS, seed=index), views)
        yield QualityCase("views60", name, FAILURE_PHOTONS, reference_hu,
                          scan(reference_hu, geometry(size, SPARSE_VIEWS), FAILURE_PHOTONS,
                               seed=index), SPARSE_VIEWS)
        yield QualityCase("overreg", name, FAILURE_PHOTONS, reference_hu,
                          scan(reference_hu, full, FAILURE_PHOTONS, seed=index), views,
                          OVERREG_SIGMA_SCALE)
    for seed in chosen["phantoms"]:
        y, reference_hu = phantom_scan(random_anatomy(seed, fov_mm=PIXEL_MM * size), full,
                                       FAILURE_PHOTONS, seed)
        yield QualityCase("phantom", f"seed {seed}", FAILURE_PHOTONS, reference_hu, y, views)


def _soft_tissue_spot(reference_hu: torch.Tensor, radius_px: float, seed: int
                      ) -> tuple[int, int]:
    """A pixel whose disk of ``radius_px`` is soft tissue (-100..100 HU) throughout."""
    hu = reference_hu[0, 0].numpy()
    r = math.ceil(radius_px)
    window = torch.nn.functional.max_pool2d(
        torch.from_numpy((np.abs(hu) > 100).astype(np.float32))[None, None], 2 * r + 1,
        stride=1, padding=r)[0, 0].numpy()
    rows, cols = np.nonzero(window == 0)
    if rows.size == 0:
        raise ValueError("no soft-tissue spot large enough")
    k = np.random.default_rng(seed).integers(rows.size)
    return int(rows[k]), int(cols[k])


def _disk(shape: tuple[int, ...], center: tuple[int, int], radius_px: float) -> torch.Tensor:
    rows = torch.arange(shape[-2]).reshape(-1, 1) - center[0]
    cols = torch.arange(shape[-1]).reshape(1, -1) - center[1]
    return (rows**2 + cols**2) <= radius_px**2


def _insert(kind: str, reference_hu: torch.Tensor, seed: int) -> torch.Tensor:
    """The reference with the kind's foreign object (``metal``, ``bubble``, ``lesion``)."""
    radius_mm = {"metal": METAL_RADIUS_MM, "bubble": BUBBLE_RADIUS_MM,
                 "lesion": LESION_RADIUS_MM}[kind]
    radius_px = radius_mm / PIXEL_MM
    disk = _disk(reference_hu.shape, _soft_tissue_spot(reference_hu, radius_px, seed), radius_px)
    out = reference_hu.clone()
    if kind == "metal":
        out[..., disk] = float(physics.mu_to_hu(torch.tensor(METAL_MU_PER_MM)))
    elif kind == "bubble":
        out[..., disk] = -1000.0
    else:
        rows, cols = torch.meshgrid(torch.arange(out.shape[-2]), torch.arange(out.shape[-1]),
                                    indexing="ij")
        checker = 200.0 * (1 - 2 * (((rows // 2) + (cols // 2)) % 2)).float()
        out[..., disk] = 60.0 + checker[disk]
    return out
