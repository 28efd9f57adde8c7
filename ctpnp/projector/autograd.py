"""The ray transform and its adjoint as torch autograd functions.

Each is the other's derivative, so gradients of any order flow through them
(``backward`` calls the other function, which is itself differentiable).
"""

from __future__ import annotations

import torch

from ctpnp.projector.backend import OdlRayTransform


class Project(torch.autograd.Function):
    """``y = A x`` for ``(B, 1, H, W)`` images."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, backend: OdlRayTransform) -> torch.Tensor:
        ctx.backend = backend
        return backend.forward(images)

    @staticmethod
    def backward(ctx, grad_sinograms: torch.Tensor) -> tuple[torch.Tensor, None]:
        return Backproject.apply(grad_sinograms, ctx.backend), None


class Backproject(torch.autograd.Function):
    """``x = A^T y`` for ``(B, 1, views, channels)`` sinograms."""

    @staticmethod
    def forward(ctx, sinograms: torch.Tensor, backend: OdlRayTransform) -> torch.Tensor:
        ctx.backend = backend
        return backend.adjoint(sinograms)

    @staticmethod
    def backward(ctx, grad_images: torch.Tensor) -> tuple[torch.Tensor, None]:
        return Project.apply(grad_images, ctx.backend), None
