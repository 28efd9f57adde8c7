"""ODL ray transforms on ASTRA for a :class:`~ctpnp.scanner.geometry.ScanGeometry`.

This is the only module that runs ODL (:mod:`ctpnp.projector.matrix` asks
ODL's ASTRA setup for the same geometry, to read ASTRA's system matrix of this
operator). It builds the ODL image space, geometry and ``RayTransform`` and
moves torch tensors in and out of them without host copies:

* CPU: ``astra_cpu`` on ODL numpy spaces (on the CPU ODL's pytorch spaces are
  several times slower); a CPU tensor is handed over as a numpy view.
* CUDA: ``astra_cuda`` on ODL pytorch spaces on the tensor's device, called
  through :class:`~ctpnp.projector.cuda.CudaSliceProjector` (ODL's ASTRA
  projector without ODL's per-call checks): ASTRA reads and writes the CUDA
  tensors in place.

The image space is unweighted (``weighting=1.0``), and with it the sinogram
space ODL derives from it: ODL's adjoint is the adjoint for the spaces' inner
products, so with unit weights it is the plain transpose that gradients and
CG need, on either backend. (With ODL's default cell-volume weights it would
carry a factor of sinogram cell over pixel area.) ODL's ``fbp_op`` accounts for
the weights itself and gives μ in 1/mm either way.

Curved detectors are projected on a virtual flat detector and resampled (see
:mod:`ctpnp.projector.channels`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import odl
import torch
from odl.applications import tomo

from ctpnp.projector.backprojection import weighted_backprojection
from ctpnp.projector.channels import ChannelResampler
from ctpnp.projector.cuda import CudaSliceProjector
from ctpnp.projector.fbp_filter import ramp_filter, ramp_response
from ctpnp.scanner.geometry import ScanGeometry


def cuda_available() -> bool:
    """True when both torch and ASTRA can use a CUDA device."""
    return torch.cuda.is_available() and tomo.ASTRA_CUDA_AVAILABLE


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device a :class:`~ctpnp.Tomography` runs on; ``None`` picks CUDA when usable."""
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if cuda_available() \
            else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not cuda_available():
            missing = "torch has no CUDA device" if not torch.cuda.is_available() \
                else "ASTRA was built without CUDA"
            raise RuntimeError(
                f"device={str(device)!r} requested but {missing}; "
                "use device='cpu' (ASTRA CPU projectors, 2D only) instead"
            )
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        return resolved
    if resolved.type != "cpu":
        raise ValueError(f"device={str(device)!r} is not supported: expected 'cpu' or 'cuda'")
    return resolved


class OdlRayTransform:
    """Slice-wise forward and back projection of torch tensors through ODL.

    Args:
        geometry: the scan.
        device: CPU or a CUDA device (see :func:`resolve_device`).
    """

    def __init__(self, geometry: ScanGeometry, device: torch.device) -> None:
        self.geometry = geometry
        self.device = device
        on_gpu = device.type == "cuda"
        height, width = geometry.image_shape
        half = (0.5 * height * geometry.pixel_mm, 0.5 * width * geometry.pixel_mm)
        space_options = {"impl": "pytorch", "device": str(device)} if on_gpu else {}
        self.space = odl.uniform_discr(
            [-half[0], -half[1]], [half[0], half[1]], (height, width),
            dtype="float32", weighting=1.0, **space_options,
        )
        odl_geometry, self.resampler = _odl_geometry(geometry, device)
        self.ray_transform = tomo.RayTransform(
            self.space, odl_geometry, impl="astra_cuda" if on_gpu else "astra_cpu"
        )
        self._back_projection = self.ray_transform.adjoint  # built once, not per call
        self._cuda = CudaSliceProjector(self.ray_transform, device) if on_gpu else None
        self._ramps: dict[tuple[str, float], tuple[torch.Tensor, int]] = {}
        self._to_flat: ChannelResampler | None = None

    # ------------------------------------------------------------------ projections
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` μ → ``(B, 1, views, channels)`` line integrals."""
        sinograms = self._per_slice(images, self.ray_transform.range.shape,
                                    self.ray_transform, self._cuda and self._cuda.forward)
        return sinograms if self.resampler is None else self.resampler.apply(sinograms)

    def adjoint(self, sinograms: torch.Tensor) -> torch.Tensor:
        """``(B, 1, views, channels)`` → ``(B, 1, H, W)``, the transpose of :meth:`forward`."""
        if self.resampler is not None:
            sinograms = self.resampler.adjoint(sinograms)
        return self._per_slice(sinograms, self.space.shape, self._back_projection,
                               self._cuda and self._cuda.backward)

    def fbp(self, sinograms: torch.Tensor, filter_name: str, frequency_scaling: float
            ) -> torch.Tensor:
        """Filtered back-projection ``(B, 1, views, channels)`` → ``(B, 1, H, W)`` μ.

        Parallel and fan beams on a flat detector (curved detectors are first
        interpolated onto the virtual flat one): fan data are cosine-weighted
        and ramp-filtered on the detector scaled to the isocentre, then
        back-projected with the exact distance weight
        (:mod:`ctpnp.projector.backprojection`); a full turn counts every line
        twice, hence the factor ``π / angular range``.
        """
        geometry = self.geometry
        if self.resampler is not None:
            sinograms = self._curved_to_flat().apply(sinograms)
        detector = self.ray_transform.geometry.det_partition
        positions_mm = torch.as_tensor(detector.meshgrid[0], dtype=torch.float32,
                                       device=self.device)
        to_isocenter = 1.0
        if geometry.kind == "fan":
            sdd = geometry.source_detector_mm
            sinograms = sinograms * (sdd / torch.sqrt(sdd**2 + positions_mm**2))
            to_isocenter = geometry.source_isocenter_mm / sdd
        spacing_mm = detector.cell_sides[0] * to_isocenter
        key = (filter_name, float(frequency_scaling))
        if key not in self._ramps:
            self._ramps[key] = ramp_response(detector.shape[0], spacing_mm, filter_name,
                                             frequency_scaling, self.device)
        filtered = ramp_filter(sinograms.contiguous(), *self._ramps[key])
        image = weighted_backprojection(filtered, geometry,
                                        float(positions_mm[0]) * to_isocenter, spacing_mm)
        return math.pi / geometry.angular_range_rad * image

    # ------------------------------------------------------------------ helpers
    def _per_slice(self, batch: torch.Tensor, out_shape: tuple[int, ...],
                   on_cpu: odl.Operator, on_cuda: Callable[[torch.Tensor, torch.Tensor], None]
                   | None) -> torch.Tensor:
        """Each ``batch[b, 0]`` through ``on_cpu`` (ODL, numpy views) or, on CUDA,
        ``on_cuda(slice, out_slice)`` (in place), stacked into ``(B, 1, *out_shape)``."""
        batch = batch.detach().contiguous()
        out = torch.empty((batch.shape[0], 1, *out_shape), dtype=torch.float32,
                          device=self.device)
        if on_cuda is not None:
            for index in range(batch.shape[0]):
                on_cuda(batch[index, 0], out[index, 0])
            return out
        arrays = batch.numpy()
        out_arrays = out.numpy()
        for index in range(batch.shape[0]):
            out_arrays[index, 0] = on_cpu(arrays[index, 0]).data
        return out

    def _curved_to_flat(self) -> ChannelResampler:
        """Interpolates curved-detector channels onto the virtual flat detector (for FBP)."""
        if self._to_flat is None:
            geometry = self.geometry
            flat_mm = self.ray_transform.geometry.det_partition.meshgrid[0]
            arc_mm = geometry.source_detector_mm * np.arctan2(flat_mm,
                                                              geometry.source_detector_mm)
            self._to_flat = ChannelResampler(geometry.channel_positions_mm, arc_mm, self.device)
        return self._to_flat


def _odl_geometry(
    geometry: ScanGeometry, device: torch.device
) -> tuple[tomo.Geometry, ChannelResampler | None]:
    """The ODL geometry for a scan, plus the flat→curved resampler when the detector is curved."""
    angle_partition = odl.uniform_partition(
        geometry.angle_start_rad, geometry.angle_start_rad + geometry.angular_range_rad,
        geometry.n_views,
    )
    positions = geometry.channel_positions_mm
    spacing = geometry.channel_spacing_mm
    if geometry.kind == "parallel":
        detector = odl.uniform_partition(positions[0] - spacing / 2,
                                         positions[-1] + spacing / 2, geometry.n_channels)
        return tomo.Parallel2dGeometry(angle_partition, detector), None

    sdd = geometry.source_detector_mm
    fan = {"src_radius": geometry.source_isocenter_mm,
           "det_radius": sdd - geometry.source_isocenter_mm}
    if geometry.detector == "flat":
        detector = odl.uniform_partition(positions[0] - spacing / 2,
                                         positions[-1] + spacing / 2, geometry.n_channels)
        return tomo.FanBeamGeometry(angle_partition, detector, **fan), None

    # Curved: a virtual flat detector covering the same fan, sampled as finely
    # as the arc at the centre (finer towards the edges).
    arc_edges_mm = (positions[0] - spacing / 2, positions[-1] + spacing / 2)
    flat_edges_mm = [sdd * math.tan(edge / sdd) for edge in arc_edges_mm]
    n_flat = math.ceil((flat_edges_mm[1] - flat_edges_mm[0]) / spacing)
    detector = odl.uniform_partition(flat_edges_mm[0], flat_edges_mm[1], n_flat)
    flat_geometry = tomo.FanBeamGeometry(angle_partition, detector, **fan)
    flat_centres_mm = detector.meshgrid[0]
    curved_on_flat_mm = sdd * np.tan(positions / sdd)
    return flat_geometry, ChannelResampler(flat_centres_mm, curved_on_flat_mm, device)
