"""ASTRA's CUDA projections of CUDA tensors, in place, with ODL's set-up of the transform.

ODL's ``astra_cuda`` ray transform projects a 2-D slice with ASTRA's 3-D CUDA
kernels on a one-slice volume (``astra.experimental.direct_FP3D`` /
``direct_BP3D``, which read and write DLPack arrays, torch's CUDA tensors
among them, in device memory). Around those two calls ODL checks space
membership and wraps results in space elements; on pytorch spaces that costs
thousands of scalar reads from the device per call (measured on an H200 at
512², 360 views: about 2,100 ``.item()`` calls, each a device-to-host copy, and
80-100 ms per slice for a forward and a back-projection).

:class:`CudaSliceProjector` makes the same two ASTRA calls with ODL's own
projector object and scale factors (so geometry, orientation and scaling are
ODL's by construction) and nothing else: the slice stays on the device.
"""

from __future__ import annotations

import threading

import astra
import torch
from odl.applications import tomo


class CudaSliceProjector:
    """Forward and back projection of one ``(H, W)`` CUDA slice through ASTRA.

    Args:
        ray_transform: an ODL ``RayTransform`` with ``impl="astra_cuda"`` on a
            pytorch space of the device; its ASTRA projector is reused.
        device: the CUDA device of the tensors.
    """

    def __init__(self, ray_transform: tomo.RayTransform, device: torch.device) -> None:
        impl = ray_transform.get_impl()
        self._projector_id = impl.projector_id
        self._forward_scale = float(impl.fp_scaling_factor)
        self._backward_scale = float(impl.bp_scaling_factor)
        self.device = device
        self._lock = threading.Lock()  # one ASTRA projector: calls must not interleave

    def forward(self, image: torch.Tensor, out: torch.Tensor) -> None:
        """Writes the ``(views, channels)`` line integrals of ``(H, W)`` ``image`` into ``out``."""
        self._run(astra.experimental.direct_FP3D, image, out, out, self._forward_scale)

    def backward(self, sinogram: torch.Tensor, out: torch.Tensor) -> None:
        """Writes the ``(H, W)`` back-projection of ``(views, channels)`` ``sinogram`` into
        ``out``."""
        self._run(astra.experimental.direct_BP3D, out, sinogram, out, self._backward_scale)

    def _run(self, direct, volume: torch.Tensor, projections: torch.Tensor,
             result: torch.Tensor, scale: float) -> None:
        """One ASTRA call on ``(1, H, W)`` / ``(1, views, channels)`` views of the slices;
        ``result`` (the one written) is then scaled."""
        with self._lock, torch.cuda.device(self.device):
            # ASTRA runs on its own stream: the inputs must be complete first
            torch.cuda.current_stream().synchronize()
            astra.set_gpu_index(self.device.index)
            direct(self._projector_id, volume[None], projections[None])
        if scale != 1.0:
            result.mul_(scale)
