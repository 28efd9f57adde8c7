"""Solvers on the real projector: convergence, backtracking, divergence, batch independence."""

import pytest
import torch

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.phantoms import load
from ctpnp.priors import TVPrior
from ctpnp.quality import psnr_hu
from ctpnp.solvers import pnp_admm, pnp_drs, pnp_pgd, tv

GEOMETRY = ScanGeometry.clinical_fan((64, 64), 3.0, 120)
OP = Tomography(GEOMETRY)


@pytest.fixture(scope="module")
def scan() -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy scans of the water cylinder with inserts (different noise): (y, true HU)."""
    phantom = load("water_inserts")
    hu = torch.from_numpy(phantom.rasterize(GEOMETRY))[None, None]
    clean = torch.from_numpy(phantom.project(GEOMETRY))[None, None].repeat(2, 1, 1, 1)
    y = torch.cat([physics.simulate_low_dose(clean[:1], 2e4, seed=1),
                   physics.simulate_low_dose(clean[1:], 2e4, seed=2)])
    return y, hu


def _decay(values: torch.Tensor) -> float:
    """Last over first value of a positive history column."""
    return float(values[-1] / values[0])


def test_admm_residuals_go_to_zero(scan):
    y, _ = scan
    result = pnp_admm(y, OP, TVPrior(), max_iter=25, rtol=0)
    assert result.ok and int(result.n_iter[0]) == 25
    for name in ("primal_residual", "dual_residual", "fixed_point_residual"):
        assert _decay(result.history[name][1:, 0]) < 0.05, name


def test_drs_fixed_point_residual_goes_to_zero(scan):
    y, _ = scan
    result = pnp_drs(y, OP, TVPrior(), max_iter=25, rtol=0)
    assert result.ok
    assert _decay(result.history["fixed_point_residual"][1:, 0]) < 0.05


def test_pgd_backtracking_never_increases_the_objective(scan):
    y, _ = scan
    # a step 3x too large for the misfit's Lipschitz constant forces backtracking
    step = 3.0 / OP.norm() ** 2
    result = pnp_pgd(y[:1], OP, TVPrior(), step=step, max_iter=8, rtol=0)
    objective = result.history["objective"][:, 0]
    assert result.ok
    assert bool((objective[1:] <= objective[:-1] * (1 + 1e-6)).all())
    assert float(result.history["step"][-1, 0]) < step  # the step was shrunk


def test_too_large_step_is_reported_as_divergence_not_an_image(scan):
    y, _ = scan
    result = pnp_pgd(y, OP, TVPrior(), step=50.0 / OP.norm() ** 2, backtracking=False,
                     sigma_mu_per_mm=0.001, max_iter=40)
    assert bool(result.diverged.all()) and not result.ok
    assert bool(torch.isnan(result.x).all())
    assert not bool(result.converged.any())


def test_results_do_not_depend_on_the_batch(scan):
    y, _ = scan
    both = pnp_admm(y, OP, TVPrior(), max_iter=8)
    second = pnp_admm(y[1:], OP, TVPrior(), max_iter=8)
    # float32 reductions round differently for another batch shape (a few ulp an iteration,
    # 4e-7 /mm after 8 measured on 2 threads); coupling between the items would be far larger
    torch.testing.assert_close(both.x[1:], second.x, rtol=1e-4, atol=2e-6)  # 2e-6 /mm = 0.1 HU
    assert int(both.n_iter[1]) == int(second.n_iter[0])


def test_each_item_stops_on_its_own(scan):
    y, _ = scan
    result = pnp_admm(y, OP, TVPrior(), max_iter=60, rtol=2e-3)
    assert bool(result.converged.all())
    relative = result.history["relative_change"]
    for item in range(2):
        stop = int(result.n_iter[item])
        assert float(relative[stop - 1, item]) < 2e-3
        # after an item stops its history is held, not updated
        assert bool((relative[stop - 1:, item] == relative[stop - 1, item]).all())


def test_equivariant_option_is_seeded_and_changes_the_iterates(scan):
    y, hu = scan
    prior = TVPrior()
    plain = pnp_admm(y[:1], OP, prior, max_iter=4, rtol=0)
    first = pnp_admm(y[:1], OP, prior, max_iter=4, rtol=0, equivariant=True, seed=3)
    again = pnp_admm(y[:1], OP, prior, max_iter=4, rtol=0, equivariant=True, seed=3)
    torch.testing.assert_close(first.x, again.x, rtol=0, atol=0)
    # FGP's forward differences are not D4-symmetric: the images differ, quality does not
    assert float((first.x - plain.x).abs().max()) > 0
    quality = [float(psnr_hu(physics.mu_to_hu(r.x), hu)) for r in (plain, first)]
    assert abs(quality[0] - quality[1]) < 1.0


def test_tv_baseline_converges_and_beats_unregularized_least_squares(scan):
    y, hu = scan
    result = tv(y[:1], OP, weight_mm=0.05, max_iter=400, rtol=1e-5)
    objective = result.history["objective"][:, 0]
    assert float(objective[-1]) <= float(objective.min()) * (1 + 1e-4)
    least_squares = OP.solve_normal(OP.adjoint(y[:1]), 1e-3, maxiter=60).x
    tv_error = (physics.mu_to_hu(result.x) - hu).abs().mean()
    ls_error = (physics.mu_to_hu(least_squares) - hu).abs().mean()
    assert float(tv_error) < 0.7 * float(ls_error)


def test_tv_dual_scale_changes_the_path_not_the_minimizer(scan):
    """A large weight: without the dual scale PDHG has hardly left the start after 100
    iterations; with it, it is close to the minimizer, which both approach."""
    y, _ = scan
    objective = {}
    for name, scale in (("default", None), ("unscaled", 1.0)):
        result = tv(y[:1], OP, weight_mm=1.0, dual_scale=scale, max_iter=1500, rtol=0)
        for at in (100, 1500):
            objective[name, at] = float(result.history["objective"][at - 1, 0])
    minimum = objective["default", 1500]
    start_gap = objective["unscaled", 100] - minimum
    assert objective["unscaled", 1500] - minimum < 0.1 * start_gap
    assert objective["default", 100] - minimum < 0.2 * start_gap


def test_bad_parameters_are_rejected(scan):
    y, _ = scan
    with pytest.raises(ValueError, match="data_weight"):
        pnp_admm(y, OP, TVPrior(), data_weight=-1.0)
    with pytest.raises(TypeError, match="prox"):
        pnp_admm(y, OP, object())
    with pytest.raises(ValueError, match="max_iter"):
        pnp_drs(y, OP, TVPrior(), max_iter=0)
    with pytest.raises(ValueError, match="y: expected shape"):
        pnp_admm(y[:, :, :5], OP, TVPrior())


class _ProxOnly:
    """A prior with a prox and nothing else (the minimal contract)."""

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return TVPrior().prox(x, sigma)


def test_a_prox_only_prior_runs_in_every_pnp_solver(scan):
    y, _ = scan
    for solve in (pnp_admm, pnp_drs, pnp_pgd):
        result = solve(y[:1], OP, _ProxOnly(), max_iter=2, rtol=0)
        assert result.ok and int(result.n_iter[0]) == 2, solve.__name__
    assert "objective" not in pnp_pgd(y[:1], OP, _ProxOnly(), max_iter=2).history
    assert "objective" in pnp_pgd(y[:1], OP, TVPrior(), max_iter=2).history


def test_an_object_without_prox_is_refused(scan):
    y, _ = scan
    with pytest.raises(TypeError, match="prox"):
        pnp_admm(y[:1], OP, object(), max_iter=1)
