"""Safeguarded Anderson acceleration on affine maps: fewer steps, per-item paths, safeguard.

In the splitting solvers: ``test_solvers_preconditioning.py``."""

import pytest
import torch

from ctpnp.solvers.anderson import Anderson


def _affine_contraction(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``T(w) = M w + b`` with symmetric ``M``, eigenvalues in [0, 0.98]: slow plain iteration."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(0.0, 0.98, n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T, torch.randn(n, generator=generator,
                                                          dtype=torch.float64)


def _iterate(maps, accelerator: Anderson | None, steps: int) -> list[torch.Tensor]:
    """Points ``(B, n)`` of ``w -> T_b(w)`` from 0, accelerated or plain."""
    w = torch.zeros(len(maps), maps[0][0].shape[0], dtype=torch.float64)
    points = [w]
    for _ in range(steps):
        image = torch.stack([m @ w_b + b for (m, b), w_b in zip(maps, w, strict=True)])
        w = image if accelerator is None else accelerator.step(w, image)
        points.append(w)
    return points


def test_acceleration_reaches_the_fixed_point_in_far_fewer_steps():
    maps = [_affine_contraction(40, seed) for seed in (0, 1)]
    exact = torch.stack([torch.linalg.solve(torch.eye(40, dtype=torch.float64) - m, b)
                         for m, b in maps])

    def error(points):
        return float(((points[-1] - exact).norm(dim=1) / exact.norm(dim=1)).max())

    accelerated, plain = error(_iterate(maps, Anderson(memory=5), 30)), error(
        _iterate(maps, None, 30))
    assert accelerated < 0.03 * plain, (accelerated, plain)  # measured: 0.0072 vs 0.53


def test_each_item_follows_its_own_path_in_a_batch():
    maps = [_affine_contraction(30, seed) for seed in (2, 3)]
    together = _iterate(maps, Anderson(memory=3), 12)[-1]
    alone = _iterate(maps[:1], Anderson(memory=3), 12)[-1]
    torch.testing.assert_close(together[:1], alone, rtol=1e-12, atol=1e-12)


def test_a_rejected_extrapolation_falls_back_to_the_plain_iteration_for_good():
    """With a safeguard nothing passes, the first extrapolated point is rejected and the
    item then runs the plain iteration from the point before it."""
    maps = [_affine_contraction(20, 4)]
    accelerator = Anderson(memory=3, safeguard=1e-12)
    points = _iterate(maps, accelerator, 9)
    plain = _iterate(maps, None, 8)
    # w1 = T(w0), w2 extrapolated (rejected at the next step), w3 = T(w1), w4 = T(w3), ...
    assert not torch.allclose(points[2], plain[2])
    for got, want in zip(points[:2] + points[3:], plain[:2] + plain[2:], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert accelerator.rejected == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="memory"):
        Anderson(memory=0)
    with pytest.raises(ValueError, match="safeguard"):
        Anderson(safeguard=0.0)
