"""One iteration monitor for every solver: history, stopping, divergence, progress.

All quantities are tracked per batch item. An item stops updating once it has
converged or diverged, so a slice's result never depends on the other slices
in its batch. Solvers never print: progress goes to ``callback``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Callback = Callable[[int, dict[str, torch.Tensor], torch.Tensor], None]
"""``callback(iteration, record, estimate)``: ``record`` maps names to ``(B,)``
tensors, ``estimate`` is the solver's current image ``(B, 1, H, W)`` μ (1/mm)."""


@dataclass(frozen=True)
class StoppingRule:
    """When a solver stops.

    Attributes:
        max_iter: iteration budget.
        rtol: stop an item when ``||x_k+1 - x_k|| / ||x_k+1|| < rtol``.
        divergence_factor: an item has diverged when its iterate is not finite
            or its fixed-point residual exceeds ``divergence_factor`` times the
            smallest residual it has had.
        wild_steps: an item has also diverged after this many consecutive
            iterations that each changed the image by more than its own norm
            (``relative_change >= 1``): a bounded cycle, e.g. between 0 and a
            large image when a too-large step meets the μ ≥ 0 constraint.
        min_iter: iterations before the relative-change test may stop an item.
    """

    max_iter: int = 50
    rtol: float = 1e-4
    divergence_factor: float = 1e3
    wild_steps: int = 5
    min_iter: int = 3

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter} must be at least 1")
        if not self.rtol >= 0:
            raise ValueError(f"rtol={self.rtol} must be non-negative")
        if not self.divergence_factor > 1:
            raise ValueError(f"divergence_factor={self.divergence_factor} must exceed 1")


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes:
        x: ``(B, 1, H, W)`` μ (1/mm). Items that diverged are NaN, never an image.
        history: name → ``(n_iter, B)`` float64 tensor (``relative_change``,
            ``fixed_point_residual`` and solver-specific entries such as
            ``primal_residual``, ``dual_residual``, ``objective``, ``step``).
        converged: ``(B,)`` bool, stopped by the relative-change rule.
        diverged: ``(B,)`` bool, stopped because the iteration blew up.
        n_iter: ``(B,)`` int, iterations each item ran.
    """

    x: torch.Tensor
    history: dict[str, torch.Tensor]
    converged: torch.Tensor
    diverged: torch.Tensor
    n_iter: torch.Tensor

    @property
    def ok(self) -> bool:
        """True when no item diverged."""
        return not bool(self.diverged.any())


@dataclass
class Monitor:
    """Tracks a batch of iterations; see :class:`StoppingRule`."""

    batch: int
    rule: StoppingRule
    callback: Callback | None = None
    _records: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    _best_residual: torch.Tensor | None = None
    _wild_run: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.active = torch.ones(self.batch, dtype=torch.bool)
        self.converged = torch.zeros(self.batch, dtype=torch.bool)
        self.diverged = torch.zeros(self.batch, dtype=torch.bool)
        self.n_iter = torch.zeros(self.batch, dtype=torch.long)
        self.iteration = 0

    @property
    def running(self) -> bool:
        return self.iteration < self.rule.max_iter and bool(self.active.any())

    def step_mask(self, like: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 1, 1)`` mask of the items still iterating, on ``like``'s device."""
        return self.active.to(like.device).view(-1, *([1] * (like.ndim - 1)))

    def update(self, x_old: torch.Tensor, x_new: torch.Tensor, estimate: torch.Tensor,
               **extra: torch.Tensor) -> None:
        """Record one iteration and decide which items stop.

        Args:
            x_old, x_new: consecutive iterates of the fixed-point variable the
                solver iterates on, ``(B, C, H, W)``.
            estimate: the image the solver would return now, ``(B, 1, H, W)``.
            extra: further ``(B,)`` per-item quantities to record.
        """
        difference = _norms(x_new - x_old)
        relative = difference / _norms(x_new).clamp_min(1e-30)
        record = {"relative_change": relative, "fixed_point_residual": difference}
        record.update({name: value.detach().double().cpu() for name, value in extra.items()})
        finite = torch.isfinite(relative) & torch.isfinite(x_new.detach().flatten(1)).all(1).cpu()
        residual = torch.where(finite, difference, torch.inf)
        best = residual if self._best_residual is None else \
            torch.minimum(self._best_residual, residual)
        wild = relative >= 1.0
        self._wild_run = wild.long() if self._wild_run is None else (self._wild_run + 1) * wild
        blown_up = (~finite | (residual > self.rule.divergence_factor * best.clamp_min(1e-30))
                    | (self._wild_run >= self.rule.wild_steps))
        self._best_residual = best
        self.iteration += 1
        self.n_iter += self.active.long()
        for name, value in record.items():
            previous = self._records.setdefault(name, [])
            held = previous[-1] if previous else torch.full_like(value, float("nan"))
            previous.append(torch.where(self.active, value, held))
        newly_diverged = self.active & blown_up
        newly_converged = (self.active & ~blown_up & (relative < self.rule.rtol)
                           & (self.n_iter >= self.rule.min_iter))
        self.diverged |= newly_diverged
        self.converged |= newly_converged
        self.active &= ~(newly_diverged | newly_converged)
        if self.callback is not None:
            self.callback(self.iteration, record, estimate)

    def result(self, x: torch.Tensor) -> SolverResult:
        """Package the final iterate; diverged items become NaN."""
        x = torch.where(self.diverged.to(x.device).view(-1, 1, 1, 1), float("nan"), x.detach())
        history = {name: torch.stack(values) for name, values in self._records.items()}
        return SolverResult(x=x, history=history, converged=self.converged.clone(),
                            diverged=self.diverged.clone(), n_iter=self.n_iter.clone())


def _norms(t: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Euclidean norms, float64 on the CPU."""
    return t.detach().double().flatten(1).norm(dim=1).cpu()
