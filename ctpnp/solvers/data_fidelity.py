"""The data term of every solver: (weighted) least squares on post-log data."""

from __future__ import annotations

import dataclasses

import torch

from ctpnp.linalg import CGResult, batch_dot, conjugate_gradient
from ctpnp.projector import Tomography
from ctpnp.solvers.preconditioner import preconditioner_for


class LeastSquares:
    """``f(x) = 1/2 sum_i w_i ((A x)_i - y_i)^2`` per batch item.

    Args:
        op: the forward model ``A``.
        y: ``(B, 1, views, channels)`` post-log line integrals.
        weights: optional ``(B, 1, views, channels)`` statistical weights
            (inverse variances, :func:`ctpnp.physics.statistical_weights`). They
            are normalized to mean 1 per item so that a data weight means the
            same with or without them.
    """

    def __init__(self, op: Tomography, y: torch.Tensor, weights: torch.Tensor | None = None
                 ) -> None:
        op._check(y, op.sinogram_shape, "y")
        self.op = op
        self.y = y
        if weights is not None:
            op._check(weights, op.sinogram_shape, "weights")
            if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
                raise ValueError("weights must be finite and non-negative")
            mean = weights.flatten(1).mean(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
            weights = weights / mean
        self.weights = weights
        self._backprojected_data: torch.Tensor | None = None

    def _weigh(self, sinograms: torch.Tensor) -> torch.Tensor:
        return sinograms if self.weights is None else self.weights * sinograms

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``A x - y``, ``(B, 1, views, channels)``: one forward projection, which
        :meth:`value_of` and :meth:`gradient_of` share."""
        return self.op.forward(x) - self.y

    def value_of(self, residual: torch.Tensor) -> torch.Tensor:
        """``(B,)`` data misfit (dimensionless) from :meth:`residual`."""
        return 0.5 * batch_dot(residual, self._weigh(residual))

    def gradient_of(self, residual: torch.Tensor) -> torch.Tensor:
        """``A^T W (A x - y)``, ``(B, 1, H, W)``, from :meth:`residual`."""
        return self.op.adjoint(self._weigh(residual))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` data misfit (dimensionless)."""
        return self.value_of(self.residual(x))

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``A^T W (A x - y)``, ``(B, 1, H, W)``."""
        return self.gradient_of(self.residual(x))

    def lipschitz(self) -> float:
        """Upper bound of the gradient's Lipschitz constant, ``max(w) ||A||^2`` (mm²)."""
        largest = 1.0 if self.weights is None else float(self.weights.max())
        return largest * self.op.norm() ** 2

    def prox(
        self,
        v: torch.Tensor,
        tau: float | torch.Tensor,
        x0: torch.Tensor | None = None,
        *,
        tol: float = 1e-5,
        maxiter: int = 30,
        preconditioner: str | None = None,
    ) -> CGResult:
        """``argmin_u tau f(u) + 1/2 ||u - v||^2`` by warm-started CG.

        Solves ``(A^T W A + I / tau) u = A^T W y + v / tau``. When autograd is
        on and ``v`` or ``tau`` requires grad, the solution is differentiable by
        implicit differentiation (one more CG solve in the backward pass, no
        graph through the CG iterations), which learning PnP parameters needs.

        Args:
            v: ``(B, 1, H, W)``.
            tau: positive scalar or ``(B,)`` tensor, in mm⁻² (``tau * ||A||^2``
                is dimensionless).
            x0: warm start, e.g. the previous x-update.
            tol, maxiter: CG's relative residual to reach and its iteration cap.
            preconditioner: ``"fourier"`` (:mod:`ctpnp.solvers.preconditioner`: the
                same solution to the same tolerance, in fewer projections) or ``None``.
        """
        inverse_tau = (1.0 / torch.as_tensor(tau, dtype=torch.float32, device=v.device)
                       ).reshape(-1, 1, 1, 1)
        if self._backprojected_data is None:  # A^T W y is the same every iteration
            with torch.no_grad():
                self._backprojected_data = self.op.adjoint(self._weigh(self.y))
        constant = inverse_tau.detach()
        precondition = preconditioner_for(preconditioner, self.op, constant)

        def solve(rhs: torch.Tensor, start: torch.Tensor | None) -> CGResult:
            with torch.no_grad():
                return conjugate_gradient(
                    lambda u: self.op.adjoint(self._weigh(self.op.forward(u))) + constant * u,
                    rhs, start, tol=tol, maxiter=maxiter, preconditioner=precondition,
                )

        result = solve(self._backprojected_data + constant * v.detach(), x0)
        if torch.is_grad_enabled() and (v.requires_grad or inverse_tau.requires_grad):
            x = _ImplicitSolution.apply(result.x, v, inverse_tau, solve)
            result = dataclasses.replace(result, x=x)
        return result


class _ImplicitSolution(torch.autograd.Function):
    """Attach the gradient of ``u = M^-1 (b + v / tau)``, ``M = A^T W A + I / tau``, to ``u``.

    With ``g = M^-1 grad_u`` (``M`` is symmetric): ``grad_v = g / tau`` and
    ``grad_(1/tau) = <g, v - u>`` per item.
    """

    @staticmethod
    def forward(ctx, solution, v, inverse_tau, solve):
        ctx.save_for_backward(solution, v, inverse_tau)
        ctx.solve = solve
        return solution.clone()

    @staticmethod
    def backward(ctx, grad_solution):
        solution, v, inverse_tau = ctx.saved_tensors
        g = ctx.solve(grad_solution, None).x
        grad_v = g * inverse_tau if ctx.needs_input_grad[1] else None
        grad_inverse_tau = None
        if ctx.needs_input_grad[2]:
            per_item = (g * (v - solution)).sum(dim=(1, 2, 3), keepdim=True)
            grad_inverse_tau = per_item.sum_to_size(inverse_tau.shape)
        return None, grad_v, grad_inverse_tau, None
