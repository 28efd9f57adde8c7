"""Training data for learned priors: HU slices -> random normalized patches with augmentations.

Slices come from any iterable of 2D HU arrays: generated phantoms
(:func:`phantom_slices_hu`), patients of the real-CT corpus
(:func:`ctpnp.data.patient_slices_hu`), a user's normal-dose series
(``ctpnp.io.read_ct_series(folder).hu``), or several chained together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ctpnp.priors.normalization import HU_PER_UNIT, MU_WATER_PER_MM, hu_to_unit

__all__ = [
    "NORMALIZATION_RECORD",
    "PatchSampler",
    "SliceSplit",
    "corpus_record",
    "phantom_slices_hu",
    "piecewise_smooth_hu",
    "split_slices_hu",
    "training_data_record",
]


def piecewise_smooth_hu(seed: int, size: int = 256) -> np.ndarray:
    """A simple synthetic body-like slice ``(size, size)`` in HU (air, fat, tissue, lungs, bone).

    Ellipses with smooth intensity ramps on a square grid; used for quick
    checks and as a stand-in where no phantom generator is available.
    """
    rng = np.random.default_rng(seed)
    c = (np.arange(size) - (size - 1) / 2) / (size / 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    img = np.full((size, size), -1000.0)

    def ellipse(cy, cx, ry, rx, angle):
        ca, sa = np.cos(angle), np.sin(angle)
        dy, dx = yy - cy, xx - cx
        u, v = ca * dy + sa * dx, -sa * dy + ca * dx
        return (u / ry) ** 2 + (v / rx) ** 2 <= 1.0

    ry, rx = rng.uniform(0.6, 0.9), rng.uniform(0.75, 0.95)
    img[ellipse(0, 0, ry, rx, 0)] = rng.uniform(-120, -80)  # fat layer
    ramp = rng.uniform(-15, 15) * yy + rng.uniform(-15, 15) * xx
    inner = ellipse(0, 0, ry - 0.06, rx - 0.06, 0)
    img[inner] = rng.uniform(20, 60) + ramp[inner]  # soft tissue
    for _ in range(rng.integers(3, 9)):  # organs, lungs, lesions, bones
        cy, cx = rng.uniform(-0.5, 0.5, 2) * np.array([ry, rx])
        m = ellipse(cy, cx, *rng.uniform(0.03, 0.3, 2), rng.uniform(0, np.pi)) & inner
        kind = rng.choice(["organ", "lung", "bone"], p=[0.6, 0.2, 0.2])
        value = {"organ": rng.uniform(-20, 120), "lung": rng.uniform(-900, -700),
                 "bone": rng.uniform(300, 1400)}[kind]
        img[m] = value + 0.3 * ramp[m]
    return img.astype(np.float32)


def phantom_slices_hu(seeds: Iterable[int], size: int = 512, pixel_mm: float = 0.8):
    """Yield generated anatomical phantom slices ``(size, size)`` in HU, one per seed.

    Uses ``ctpnp.phantoms.random_anatomy(seed)`` rasterized on a ``size x
    size`` grid of ``pixel_mm`` pixels.
    """
    from ctpnp.phantoms import random_anatomy
    from ctpnp.scanner.geometry import ScanGeometry

    geometry = ScanGeometry.parallel(image_shape=(size, size), pixel_mm=pixel_mm, n_views=1)
    for seed in seeds:
        yield np.asarray(random_anatomy(seed).rasterize(geometry), dtype=np.float32)


NORMALIZATION_RECORD = {
    "unit": "u = (HU + 1000) / 2000 = mu / (2 mu_water)",
    "hu_window": [-1000.0, 1000.0],
    "mu_water_per_mm": MU_WATER_PER_MM,
}
"""What a model card records of the intensity normalization the priors are trained in."""


@dataclass(frozen=True)
class SliceSplit:
    """The slices a prior is trained and validated on, and how its patches are augmented:
    the fields every training config shares (each config adds its own).

    Attributes:
        train_seeds / val_seeds: ``ctpnp.phantoms.random_anatomy`` seeds of the training /
            validation phantom slices.
        real_patients / val_patients: corpus patients (:data:`ctpnp.data.SPLITS`) added to
            the training / validation slices.
        jitter_scale / jitter_offset_hu: per-patch contrast scale and HU offset
            augmentation of the training patches (:class:`PatchSampler`).
        slice_size / pixel_mm: phantom slices are ``slice_size^2`` pixels of ``pixel_mm`` mm.
        seed: RNG seed of the run (initialization, patches, augmentation, noise).
    """

    train_seeds: tuple[int, ...] = tuple(range(32))
    val_seeds: tuple[int, ...] = (100_000, 100_001)
    real_patients: tuple[str, ...] = ()
    val_patients: tuple[str, ...] = ()
    jitter_scale: float = 0.0
    jitter_offset_hu: float = 0.0
    slice_size: int = 512
    pixel_mm: float = 0.8
    seed: int = 0


def training_data_record(config: SliceSplit, phantoms: str = "anatomy", **counts: int) -> dict:
    """What a model card records of a run's training data: the phantom kind and seeds, the
    corpus patients (:func:`corpus_record`), ``counts`` (e.g. ``patches``), the phantom
    grid and the augmentations."""
    return {
        "phantoms": phantoms,
        "train_seeds": list(config.train_seeds),
        "real_patients": corpus_record(config.real_patients),
        **counts,
        "slice_size": config.slice_size,
        "pixel_mm": config.pixel_mm,
        "augmentations": ["rot90", "horizontal flip",
                          f"contrast x (1 +- {config.jitter_scale})",
                          f"offset +- {config.jitter_offset_hu} HU"],
    }


def split_slices_hu(config: SliceSplit, which: str = "train") -> list[np.ndarray]:
    """The HU slices of a run's ``"train"`` or ``"validation"`` set: phantoms, then every
    slice of the patients."""
    from ctpnp.data import patient_slices_hu

    seeds, patients = ((config.train_seeds, config.real_patients) if which == "train"
                       else (config.val_seeds, config.val_patients))
    return [*phantom_slices_hu(seeds, config.slice_size, config.pixel_mm),
            *patient_slices_hu(patients)]


def corpus_record(patients: Iterable[str]) -> list[dict]:
    """What a model card records of the corpus ``patients``: source, digest, licence, origin."""
    from ctpnp.data import SOURCES

    return [
        {"patient": name, "anatomy": SOURCES[name].anatomy, "source": SOURCES[name].archive.name,
         "member": SOURCES[name].member, "sha256": SOURCES[name].archive.sha256,
         "licence": SOURCES[name].archive.licence, "origin": SOURCES[name].archive.origin}
        for name in patients
    ]


class PatchSampler:
    """Random ``(N, 1, p, p)`` patches of normalized intensity with flips/rot90.

    Args:
        slices_hu: 2D HU arrays (any sizes ``>= patch_size``).
        patch_size: patch side ``p`` (pixels).
        min_std_unit: patches of normalized std below this are re-drawn (mostly
            pure air), at most once, to spend fewer samples on empty background.
        generator: torch RNG (its state is checkpointed by the trainer).
        jitter_scale: each patch's contrast is scaled about water by ``1 + U(-a, a)``.
        jitter_offset_hu: and shifted by ``U(-b, b)`` HU (scanner calibration spread).
    """

    def __init__(
        self,
        slices_hu: Iterable[np.ndarray | torch.Tensor],
        patch_size: int,
        generator: torch.Generator,
        min_std_unit: float = 1e-3,
        jitter_scale: float = 0.0,
        jitter_offset_hu: float = 0.0,
    ) -> None:
        self.images: Sequence[torch.Tensor] = [
            hu_to_unit(torch.as_tensor(np.asarray(s), dtype=torch.float32)) for s in slices_hu
        ]
        if not self.images:
            raise ValueError("PatchSampler needs at least one slice")
        for im in self.images:
            if im.ndim != 2 or min(im.shape) < patch_size:
                raise ValueError(f"slices must be 2D and >= {patch_size} px, got {tuple(im.shape)}")
        self.patch_size = patch_size
        self.generator = generator
        self.min_std_unit = min_std_unit
        self.jitter_scale = jitter_scale
        self.jitter_offset_unit = jitter_offset_hu / HU_PER_UNIT

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=self.generator)

    def _draw(self, n: int) -> torch.Tensor:
        # three RNG calls per batch (not per patch): sampling stays cheap beside a GPU step
        p = self.patch_size
        which = self._randint(len(self.images), n).tolist()
        corner = torch.rand(n, 2, generator=self.generator).tolist()
        out = torch.empty(n, 1, p, p)
        for i, (k, (fr, fc)) in enumerate(zip(which, corner, strict=True)):
            im = self.images[k]
            rows, cols = im.shape[0] - p + 1, im.shape[1] - p + 1
            r, c = min(int(fr * rows), rows - 1), min(int(fc * cols), cols - 1)
            out[i, 0] = im[r : r + p, c : c + p]
        return out

    def sample(self, n: int) -> torch.Tensor:
        """``n`` clean patches ``(n, 1, p, p)`` (normalized intensity), augmented."""
        patches = self._draw(n)
        flat = patches.flatten(1).std(1) < self.min_std_unit
        if flat.any():
            patches[flat] = self._draw(int(flat.sum()))
        rot = self._randint(4, n)
        flip = self._randint(2, n).bool()
        for k in range(1, 4):
            sel = rot == k
            patches[sel] = torch.rot90(patches[sel], k, dims=(2, 3))
        patches[flip] = patches[flip].flip(3)
        if self.jitter_scale or self.jitter_offset_unit:
            a, b = (2 * torch.rand(2, n, 1, 1, 1, generator=self.generator) - 1).unbind(0)
            water = hu_to_unit(torch.zeros(()))
            patches = water + (patches - water) * (1 + self.jitter_scale * a)
            patches = patches + self.jitter_offset_unit * b
        return patches
