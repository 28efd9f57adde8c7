"""Simulated training scans that keep their PnP solver state between visits.

Restarted Jacobian-free backpropagation (Davy, Briceño-Arias & Pustelnik 2025)
revisits each training scan where its iteration was left instead of restarting
from FBP. :class:`ScanSet` holds a stack of such scans on one geometry: the
post-log data, the reference image, the estimated noise variance and the
solver state, all indexed by scan so that a training step can visit any subset
as one batch. :func:`scan_set` simulates them: exact line integrals of random
anatomies (no inverse crime) and real slices projected from a grid twice as
fine, each with Poisson noise at every dose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ctpnp import physics
from ctpnp.phantoms import random_anatomy
from ctpnp.projector import Tomography
from ctpnp.simulation import clean_projection, phantom_scan
from ctpnp.solvers import SPLITTINGS
from ctpnp.solvers.common import initial_image
from ctpnp.solvers.data_fidelity import LeastSquares

__all__ = ["ScanSet", "scan_set"]

REAL_NOISE_SEED = 10_000
"""Noise seeds of real slices start here (phantom ``s`` at dose ``k`` uses ``100 s + k``)."""


@dataclass
class ScanSet:
    """``N`` training scans on ``op``'s geometry and the solver state each was left in.

    Attributes:
        op: the forward model (its device holds every tensor below but ``variance``).
        y: ``(N, 1, views, channels)`` post-log data.
        reference_hu: ``(N, 1, H, W)`` the images scanned (HU).
        variance: ``(N,)`` float64 on the CPU, the noise variance estimated from ``y``
            (what the dose rule reads).
        state: the solver's state, each part ``(N, ...)``.
    """

    op: Tomography
    y: torch.Tensor
    reference_hu: torch.Tensor
    variance: torch.Tensor
    state: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return self.y.shape[0]

    def data(self, index: torch.Tensor) -> LeastSquares:
        """The data term of the scans ``index`` ``(b,)`` (long), as one batch."""
        return LeastSquares(self.op, self.y[index.to(self.y.device)])

    def get(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The solver state of the scans ``index`` (copies)."""
        index = index.to(self.y.device)
        return tuple(part[index] for part in self.state)

    def put(self, index: torch.Tensor, state: tuple[torch.Tensor, ...]) -> None:
        """Store ``state`` (detached) as the state of the scans ``index``."""
        index = index.to(self.y.device)
        for part, new in zip(self.state, state, strict=True):
            part[index] = new.detach()


def scan_set(
    op: Tomography,
    solver: str,
    photons: Sequence[float],
    *,
    phantom_seeds: Sequence[int] = (),
    real_slices_hu: Sequence[np.ndarray] = (),
) -> ScanSet:
    """Scans of ``op``'s geometry at every dose of ``photons``, each started from FBP.

    Args:
        op: the forward model; its grid is the references' grid.
        solver: a key of :data:`ctpnp.solvers.SPLITTINGS` (its ``start`` makes the state).
        photons: incident photons per reading (Poisson noise), one scan per dose.
        phantom_seeds: random anatomies filling the field of view, scanned from
            their exact line integrals (noise seed ``100 seed + dose index``).
        real_slices_hu: ``(H, W)`` HU slices on ``op``'s grid, scanned from a grid
            twice as fine (:func:`ctpnp.simulation.clean_projection`).

    Raises:
        ValueError: no scans, or a slice whose shape is not ``op``'s image shape.
    """
    if not photons or not (phantom_seeds or real_slices_hu):
        raise ValueError("scan_set needs at least one dose and one phantom seed or slice")
    fov_mm = op.geometry.image_shape[0] * op.geometry.pixel_mm
    ys, references = [], []
    for seed in phantom_seeds:
        phantom = random_anatomy(seed, fov_mm=fov_mm)
        for k, count in enumerate(photons):
            y, hu = phantom_scan(phantom, op.geometry, count, seed * 100 + k)
            ys.append(y)
            references.append(hu)
    for i, image in enumerate(real_slices_hu):
        if tuple(image.shape) != tuple(op.geometry.image_shape):
            raise ValueError(f"real slice {i} has shape {tuple(image.shape)}, the scan's grid "
                             f"is {tuple(op.geometry.image_shape)}")
        hu = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None, None]
        clean = clean_projection(hu, op.geometry)
        for k, count in enumerate(photons):
            ys.append(physics.simulate_low_dose(clean, count,
                                                seed=REAL_NOISE_SEED + len(photons) * i + k))
            references.append(hu)
    y = torch.cat(ys).to(op.device)
    start = SPLITTINGS[solver].start(initial_image(op, y, None))
    return ScanSet(op, y, torch.cat(references).to(op.device),
                   physics.estimate_noise_variance(y).cpu().double(), start)
