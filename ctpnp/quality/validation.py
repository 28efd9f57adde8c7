"""The clean validation scans the quality indicator is calibrated and measured on.

Slices of the corpus's validation patients only (:data:`ctpnp.data.SPLITS`,
never a training patient), resampled to the priors' 0.8 mm pixels
(:data:`ctpnp.evaluation.PIXEL_MM`) and centre-cropped to the grid, then
scanned from a grid twice as fine (:func:`ctpnp.simulation.clean_projection`)
with Poisson noise. The calibration and the benchmark use disjoint slices:
:data:`CALIBRATION_SLICES` and :data:`BENCHMARK_SLICES`. Reconstructions are
PnP-ADMM with the prior's default parameters, run to its own stopping rule.
"""

from __future__ import annotations

import numpy as np
import torch

from ctpnp import physics
from ctpnp.data import SPLITS, load_patient
from ctpnp.data.slices import fit_to_size, resample_slice
from ctpnp.evaluation import PIXEL_MM
from ctpnp.projector import Tomography
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.simulation import clean_projection
from ctpnp.solvers import SolverResult, pnp_admm

__all__ = ["BENCHMARK_SLICES", "CALIBRATION_SLICES", "corpus_slice_hu", "geometry",
           "reconstruct", "scan"]

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
