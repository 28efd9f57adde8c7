"""Batched linear algebra on ``(B, ...)`` tensors, one independent system per batch item."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CGResult:
    """Outcome of :func:`conjugate_gradient`.

    Attributes:
        x: solution, same shape as the right-hand side.
        n_iter: iterations run (the slowest batch item).
        relative_residual: ``(B,)`` final ``||b - M x|| / ||b||`` per item.
        converged: ``(B,)`` whether each item reached the tolerance.
    """

    x: torch.Tensor
    n_iter: int
    relative_residual: torch.Tensor
    converged: torch.Tensor


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B,)`` inner products of matching ``(B, ...)`` tensors, accumulated in float64."""
    return (a.double() * b.double()).flatten(1).sum(dim=1)


def conjugate_gradient(
    apply_matrix: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    tol: float = 1e-5,
    maxiter: int = 100,
    preconditioner: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> CGResult:
    """Solve ``M x = b`` for a symmetric positive definite ``M``, batch item by batch item.

    Each item keeps its own step sizes and stops updating once its relative
    residual is below ``tol``, so an item's result does not depend on what
    else is in the batch. With a ``preconditioner`` ``r -> P r`` (``P``
    symmetric positive definite, acting per item, ``P ~ M^-1``) this is
    preconditioned CG: the same system and the same stopping rule on the true
    residual ``||b - M x||``, in fewer iterations when ``P`` is good.

    Args:
        apply_matrix: ``x -> M x`` on ``(B, ...)`` tensors.
        b: ``(B, ...)`` right-hand side.
        x0: warm start (default zeros).
        tol: relative residual ``||b - M x|| / ||b||`` to reach.
        maxiter: maximum number of iterations.
        preconditioner: optional ``r -> P r`` on ``(B, ...)`` tensors.
    """
    x = torch.zeros_like(b) if x0 is None else x0.detach().clone()
    residual = b - apply_matrix(x) if x0 is not None else b.clone()
    b_norm = batch_dot(b, b).sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    precondition = (lambda r: r) if preconditioner is None else preconditioner
    preconditioned = precondition(residual)
    direction = preconditioned
    residual_sq = batch_dot(residual, residual)
    rho = batch_dot(residual, preconditioned)  # r^T P r (= residual_sq without P)
    active = residual_sq.sqrt() / b_norm > tol
    n_iter = 0
    while n_iter < maxiter and bool(active.any()):
        matrix_direction = apply_matrix(direction)
        curvature = batch_dot(direction, matrix_direction)
        alpha = torch.where(active, rho / curvature.clamp_min(1e-300), 0.0)
        x = x + _expand(alpha, x) * direction
        residual = residual - _expand(alpha, x) * matrix_direction
        preconditioned = precondition(residual)
        new_rho = batch_dot(residual, preconditioned)
        beta = torch.where(active, new_rho / rho.clamp_min(1e-300), 0.0)
        direction = preconditioned + _expand(beta, x) * direction
        rho = torch.where(active, new_rho, rho)
        residual_sq = torch.where(active, batch_dot(residual, residual), residual_sq)
        active = active & (residual_sq.sqrt() / b_norm > tol)
        n_iter += 1
    relative = residual_sq.sqrt() / b_norm
    return CGResult(x=x, n_iter=n_iter, relative_residual=relative, converged=relative <= tol)


def _expand(per_item: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 → broadcastable ``(B, 1, ...)`` in ``like``'s dtype."""
    return per_item.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
