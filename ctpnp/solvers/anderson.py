"""Safeguarded Anderson acceleration of a batch of fixed-point iterations ``w -> T(w)``.

The splitting solvers iterate an averaged operator ``T`` (relaxed
Douglas–Rachford); its fixed points are the solutions. Anderson acceleration
(type II, memory ``m``) replaces the plain step ``w+ = T(w)`` by the
combination of the last ``m + 1`` images ``T(w_j)`` whose residuals
``T(w_j) - w_j`` combine to the smallest one (a small regularized
least-squares problem per batch item). It changes the path only: a point
``w`` is a fixed point of the accelerated iteration exactly when ``T(w) = w``.

Safeguard: an extrapolated point is kept only if its residual, seen at the
next iteration, is at most ``safeguard`` times the residual of the point it was
extrapolated from. Otherwise that item's memory is cleared and the iteration
continues from the plain image ``T(w)`` of that earlier point, as if the
extrapolation had never happened; so every accepted point has a residual no
larger than the plain iteration's bound allows, and the plain iteration's
convergence carries over.

All state is per item of the batch (``(B, N)`` flattened points, float64 for
the small systems), so one slice never changes another's path.
"""

from __future__ import annotations

import torch

DEFAULT_MEMORY = 3
"""Residual differences kept per item (``m``)."""

DEFAULT_SAFEGUARD = 1.0
"""An extrapolated point must not raise the residual of the point it came from."""

REGULARIZATION = 1e-8
"""Tikhonov weight of the least-squares problem, relative to its largest diagonal entry."""


class Anderson:
    """Accelerates ``w -> T(w)`` for a batch; call :meth:`step` once per iteration.

    Args:
        memory: ``m`` >= 1, the residual differences kept.
        safeguard: accept an extrapolated point when its residual is at most this
            times the residual of the point it was extrapolated from.

    Attributes:
        rejected: extrapolated points rejected so far (summed over the batch).
    """

    def __init__(self, memory: int = DEFAULT_MEMORY, safeguard: float = DEFAULT_SAFEGUARD
                 ) -> None:
        if memory < 1:
            raise ValueError(f"memory must be at least 1, got {memory}")
        if not safeguard > 0:
            raise ValueError(f"safeguard must be positive, got {safeguard}")
        self.memory = memory
        self.safeguard = safeguard
        self.rejected = 0
        self._images: list[torch.Tensor] = []  # T(w_j), (B, N)
        self._residuals: list[torch.Tensor] = []  # T(w_j) - w_j, (B, N)
        self._valid: list[torch.Tensor] = []  # (B,) bool: entry j belongs to the item's path
        self._checked: torch.Tensor | None = None  # (B,) bool: the point is extrapolated
        self._reference: torch.Tensor | None = None  # (B,) residual it must not exceed
        self._fallback: torch.Tensor | None = None  # (B, N) plain image of the earlier point

    def step(self, point: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The next point from ``point`` ``w`` and its image ``T(w)`` (same shape, ``(B, ...)``).

        Returns a tensor of that shape: the extrapolated point, or, for an item
        whose extrapolated ``point`` is rejected, the plain image of the point
        it was extrapolated from (its memory then starts anew).
        """
        w, t = point.flatten(1), image.flatten(1)
        residual = t - w
        norm = residual.double().norm(dim=1)
        reject = torch.zeros_like(norm, dtype=torch.bool)
        if self._checked is not None:
            reject = self._checked & (norm > self.safeguard * self._reference)
        if reject.any():
            self.rejected += int(reject.sum())
            self._valid = [valid & ~reject for valid in self._valid]
        self._images.append(t)
        self._residuals.append(residual)
        self._valid.append(~reject)
        if len(self._images) > self.memory + 1:
            del self._images[0], self._residuals[0], self._valid[0]
        combined, extrapolated = self._combine()
        rejected = reject.view(-1, 1)
        if reject.any():
            combined = torch.where(rejected, self._fallback, combined)
        self._checked = extrapolated & ~reject
        self._reference = norm
        self._fallback = t
        return combined.reshape(image.shape)

    def _combine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_j a_j T(w_j), extrapolated)`` with ``sum_j a_j = 1`` minimizing
        ``||sum_j a_j r_j||`` per item over its valid entries (written with the
        differences of consecutive entries, solved in float64); ``extrapolated``
        ``(B,)`` says whether an item had a difference to use."""
        latest = self._images[-1]
        if len(self._images) < 2:
            return latest, torch.zeros(latest.shape[0], dtype=torch.bool,
                                       device=self._valid[-1].device)
        valid = torch.stack(self._valid, 1)  # (B, k+1)
        usable = (valid[:, 1:] & valid[:, :-1]).to(torch.float64)  # (B, k)
        residuals = torch.stack(self._residuals, 2).double()  # (B, N, k+1)
        images = torch.stack(self._images, 2).double()
        d_residuals = (residuals[..., 1:] - residuals[..., :-1]) * usable[:, None]
        d_images = (images[..., 1:] - images[..., :-1]) * usable[:, None]
        gram = d_residuals.transpose(1, 2) @ d_residuals  # (B, k, k)
        scale = gram.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1e-300)
        eye = torch.eye(gram.shape[1], dtype=gram.dtype, device=gram.device)
        gram = gram + REGULARIZATION * scale.view(-1, 1, 1) * eye
        rhs = d_residuals.transpose(1, 2) @ residuals[..., -1:]  # (B, k, 1)
        gamma = torch.linalg.solve(gram, rhs)
        combined = images[..., -1] - (d_images @ gamma).squeeze(2)
        return combined.to(latest.dtype), usable.bool().any(1)
