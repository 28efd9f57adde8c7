"""Pixel-driven weighted back-projection of filtered sinograms (the B in FBP).

The textbook fan-beam FBP (Kak & Slaney 1988, ch. 3.4.2) weights each view's
contribution to a pixel by ``1 / U^2`` with ``U`` the pixel's distance from the
source along the central ray over the source–isocentre distance. ASTRA's
ray-driven back-projector (the transpose used for gradients) has a different
distance weighting, which leaves a radially varying error of several HU. This
back-projector samples the filtered projection at each pixel's detector
coordinate, applies the exact weight, and runs the same on CPU and CUDA
tensors. Parallel beams are the special case ``U = 1``.
"""

from __future__ import annotations

import torch

from ctpnp.scanner.geometry import ScanGeometry

VIEWS_PER_CHUNK = {"cpu": 1, "cuda": 16}
"""Views back-projected per vectorized step, per device type. On the CPU the step is
bound by memory traffic and one view at a time is fastest (512², 360 views, one
thread: 0.98 s against 1.36 s with 16 views a step and 5.3 s with 64); on a GPU
larger steps mean fewer kernel launches."""


def weighted_backprojection(
    filtered: torch.Tensor,
    geometry: ScanGeometry,
    first_position_mm: float,
    spacing_mm: float,
) -> torch.Tensor:
    """``Σ_views Δθ · U⁻² · q(view, u(pixel))`` for filtered sinograms ``q``.

    Args:
        filtered: ``(B, 1, views, channels)`` ramp-filtered projections sampled
            on a flat (virtual, for fan beams at the isocentre) detector.
        geometry: the scan and image grid (angles, distances, pixels).
        first_position_mm: detector coordinate of channel 0 of ``filtered`` at
            the isocentre (mm).
        spacing_mm: channel spacing of ``filtered`` at the isocentre (mm).

    Returns:
        ``(B, 1, H, W)``; the angular measure is ``dθ`` (no 1/2 for full turns).
    """
    batch, _, n_views, n_channels = filtered.shape
    device = filtered.device
    height, width = geometry.image_shape
    axis0 = (torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2) \
        * geometry.pixel_mm
    axis1 = (torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2) \
        * geometry.pixel_mm
    grid0, grid1 = (g.reshape(1, -1) for g in torch.meshgrid(axis0, axis1, indexing="ij"))
    angles = torch.as_tensor(geometry.angles_rad, dtype=torch.float32, device=device)
    d_theta = geometry.angular_range_rad / geometry.n_views
    out = torch.zeros((batch, height * width), dtype=torch.float32, device=device)
    flat = filtered.reshape(batch, n_views, n_channels)
    chunk_views = VIEWS_PER_CHUNK.get(device.type, 1)
    for start in range(0, n_views, chunk_views):
        theta = angles[start:start + chunk_views, None]
        # pixel coordinates along the central ray and the detector axis
        along = -torch.sin(theta) * grid0 + torch.cos(theta) * grid1
        lateral = torch.cos(theta) * grid0 + torch.sin(theta) * grid1
        if geometry.kind == "fan":
            magnification = geometry.source_isocenter_mm / (geometry.source_isocenter_mm + along)
            u_mm, weight = lateral * magnification, magnification**2
        else:
            u_mm, weight = lateral, torch.ones_like(lateral)
        index = (u_mm - first_position_mm) / spacing_mm
        left = index.floor().clamp(0, n_channels - 2)
        fraction = index - left
        inside = (index >= 0) & (index <= n_channels - 1)
        left = left.long()
        chunk = flat[:, start:start + chunk_views]
        views = chunk.shape[1]
        gather_left = torch.gather(chunk, 2, left.expand(batch, views, -1))
        gather_right = torch.gather(chunk, 2, (left + 1).expand(batch, views, -1))
        samples = gather_left + fraction * (gather_right - gather_left)
        out += (samples * (weight * inside)).sum(dim=1)
    return (d_theta * out).reshape(batch, 1, height, width)
