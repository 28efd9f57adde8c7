"""What the study scans: reference images, exact noiseless data and measurement ROIs.

Analytic phantoms (random anatomy and the shipped definitions) are projected
with their exact line integrals; the real CT slice is projected from a grid
twice as fine as its own (:func:`ctpnp.simulation.clean_projection`). Neither
uses the reconstruction's projector, so there is no inverse crime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ctpnp.apps.study.config import SceneSpec, StudyConfig
from ctpnp.io import read_pydicom_slice
from ctpnp.phantoms import Phantom, load, random_anatomy
from ctpnp.phantoms.shapes import Shape
from ctpnp.scanner.geometry import ScanGeometry
from ctpnp.simulation import clean_projection

__all__ = ["Insert", "Scene", "build_scene", "fitted_phantom", "object_mask",
           "pydicom_example_slice"]

AIR_HU = -1000.0
_OUTLINE_STEP_MM = 2.0
_OUTLINE_REACH_MM = 400.0


@dataclass(frozen=True)
class Insert:
    """A measurement ROI: ``mask`` ``(H, W)`` bool, its nominal CT number (HU)."""

    name: str
    nominal_hu: float
    mask: np.ndarray


@dataclass(frozen=True)
class Scene:
    """One scanned object.

    Attributes:
        spec: its configuration entry.
        geometry: the clinical fan-beam scan and reconstruction grid.
        reference_hu: ``(1, 1, H, W)`` float32 ground truth (HU).
        clean: ``(1, 1, views, channels)`` noiseless post-log data.
        inserts: insert ROIs (``spec.rois`` only), eroded.
        noise_roi: ``(H, W)`` bool uniform region around the centre, eroded
            (``spec.rois`` only, else ``None``).
    """

    spec: SceneSpec
    geometry: ScanGeometry
    reference_hu: torch.Tensor
    clean: torch.Tensor
    inserts: tuple[Insert, ...] = ()
    noise_roi: np.ndarray | None = None


def build_scene(spec: SceneSpec, config: StudyConfig) -> Scene:
    """Reference image, noiseless data and ROIs of ``spec`` under ``config``."""
    if spec.source == "pydicom_ct":
        reference_hu, pixel_mm = pydicom_example_slice()
        geometry = ScanGeometry.clinical_fan(tuple(reference_hu.shape[-2:]), pixel_mm,
                                             config.views)
        return Scene(spec, geometry, reference_hu, clean_projection(reference_hu, geometry))
    geometry = ScanGeometry.clinical_fan((config.size, config.size), config.pixel_mm,
                                         config.views)
    fov_mm = config.size * config.pixel_mm
    if spec.source == "anatomy":
        phantom = random_anatomy(spec.seed, fov_mm=fov_mm, texture=spec.texture)
    else:
        phantom = fitted_phantom(spec.phantom, spec.fill * fov_mm)
    reference_hu = torch.from_numpy(phantom.rasterize(geometry))[None, None]
    clean = torch.from_numpy(phantom.project(geometry))[None, None]
    if not spec.rois:
        return Scene(spec, geometry, reference_hu, clean)
    inserts = tuple(_insert(shape, reference_hu, geometry, config.roi_erosion_px)
                    for shape in phantom.shapes[1:])
    return Scene(spec, geometry, reference_hu, clean, inserts,
                 _uniform_centre(reference_hu[0, 0].numpy(), config.roi_erosion_px))


def fitted_phantom(name: str, diameter_mm: float) -> Phantom:
    """Shipped phantom ``name`` scaled so its outline fits a circle of ``diameter_mm``.

    The outline radius is found by sampling the phantom on a 2 mm grid
    (rounded up by one step), so the fit is conservative by at most 2 mm.
    """
    phantom = load(name)
    axis = np.arange(-_OUTLINE_REACH_MM, _OUTLINE_REACH_MM + 1e-9, _OUTLINE_STEP_MM)
    grid = np.stack(np.meshgrid(axis, axis, [0.0], indexing="ij"), -1).reshape(-1, 3)
    inside = phantom.hu_at(grid) != AIR_HU
    if not inside.any():
        raise ValueError(f"phantom {name!r} has nothing inside ±{_OUTLINE_REACH_MM} mm")
    radius_mm = float(np.hypot(grid[inside, 0], grid[inside, 1]).max()) + _OUTLINE_STEP_MM
    return load(name, scale=diameter_mm / (2 * radius_mm))


def object_mask(reference_hu: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the object (above -500 HU, holes filled) of an ``(H, W)`` HU image."""
    return ndimage.binary_fill_holes(reference_hu > -500.0)


def _insert(shape: Shape, reference_hu: torch.Tensor, geometry: ScanGeometry,
            erosion_px: int) -> Insert:
    """Pixels wholly inside ``shape``, eroded; nominal HU from the reference there."""
    unit = Phantom(shape.name, (dataclasses.replace(shape, hu=1.0),))
    coverage = unit.rasterize(geometry) - AIR_HU
    mask = _erode(coverage > 0.999, erosion_px)
    nominal_hu = float(np.median(reference_hu[0, 0].numpy()[mask])) if mask.any() else np.nan
    return Insert(shape.name, nominal_hu, mask)


def _uniform_centre(reference_hu: np.ndarray, erosion_px: int) -> np.ndarray:
    """The connected region of the centre pixel's CT number (±0.5 HU), eroded."""
    centre = reference_hu[reference_hu.shape[0] // 2, reference_hu.shape[1] // 2]
    labels, _ = ndimage.label(np.abs(reference_hu - centre) < 0.5)
    region = labels == labels[reference_hu.shape[0] // 2, reference_hu.shape[1] // 2]
    return _erode(region, erosion_px)


def _erode(mask: np.ndarray, erosion_px: int) -> np.ndarray:
    return ndimage.binary_erosion(mask, iterations=erosion_px) if erosion_px else mask


def pydicom_example_slice() -> tuple[torch.Tensor, float]:
    """pydicom's example CT slice as ``(1, 1, H, W)`` HU and its pixel size (mm)."""
    series = read_pydicom_slice()
    return torch.from_numpy(series.hu[:1].copy())[None], float(series.spacing_mm[1])
