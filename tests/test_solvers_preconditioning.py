"""The data step's preconditioner, the relaxed and the accelerated splittings: same
solutions, fewer projections."""

import pytest
import torch

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.linalg import conjugate_gradient
from ctpnp.phantoms import load
from ctpnp.solvers import pnp_admm, pnp_drs, pnp_pgd
from ctpnp.solvers.parameters import PnPParameters
from ctpnp.solvers.preconditioner import FourierPreconditioner, gram_spectrum
from ctpnp.solvers.splitting import DEFAULT_RELAXATION, LEGACY_SETTINGS

GEOMETRY = ScanGeometry.clinical_fan((64, 64), 3.0, 120)
OP = Tomography(GEOMETRY)


@pytest.fixture(scope="module")
def y() -> torch.Tensor:
    """A noisy scan of the water cylinder with inserts, ``(1, 1, views, channels)``."""
    phantom = load("water_inserts")
    clean = torch.from_numpy(phantom.project(GEOMETRY))[None, None]
    return physics.simulate_low_dose(clean, 2e4, seed=3)


class _Quadratic:
    """``R(x) = lam/2 ||x||^2``: exact prox, so every solver's fixed point is known."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return x / (1.0 + sigma**2 * self.lam)


def test_preconditioned_cg_solves_the_same_system_in_fewer_steps(y):
    shift = torch.tensor(2e-2 * OP.norm() ** 2).reshape(1, 1, 1, 1)
    b = OP.adjoint(y) + shift * OP.fbp(y)

    def matrix(u):
        return OP.gram(u) + shift * u

    plain = conjugate_gradient(matrix, b, tol=1e-6, maxiter=500)
    preconditioned = conjugate_gradient(matrix, b, tol=1e-6, maxiter=500,
                                        preconditioner=FourierPreconditioner(OP, shift))
    assert bool(plain.converged.all()) and bool(preconditioned.converged.all())
    assert preconditioned.n_iter <= 0.6 * plain.n_iter, (preconditioned.n_iter, plain.n_iter)
    difference = (preconditioned.x - plain.x).norm() / plain.x.norm()
    assert float(difference) < 1e-4


def test_the_spectrum_is_a_positive_low_pass_fit_of_the_gram_operator():
    spectrum = gram_spectrum(OP)
    assert spectrum.shape == (128, 65) and bool((spectrum >= 0).all())
    # A^T A of a full turn weighs low frequencies most (a ~1/|omega| response)
    assert float(spectrum[0, 0]) > 10 * float(spectrum[64, 32])
    # on a smooth image the circulant fit is close to the real operator
    rows = torch.linspace(-1, 1, 64)
    blob = torch.exp(-(rows[:, None] ** 2 + rows[None, :] ** 2) / 0.1)[None, None]
    fitted = torch.fft.irfft2(torch.fft.rfft2(blob, s=(128, 128)) * spectrum,
                              s=(128, 128))[..., :64, :64]
    exact = OP.gram(blob)
    assert float((fitted - exact).norm() / exact.norm()) < 0.15


def test_admm_drs_and_pgd_reach_the_same_fixed_point_in_both_configurations(y):
    prior = _Quadratic(lam=0.05 * OP.norm() ** 2)
    data_weight = 1.0
    step = 0.99 / OP.norm() ** 2  # PGD's default step; its fixed points need sigma^2 = t / w
    sigma = (step / data_weight) ** 0.5
    exact = conjugate_gradient(lambda u: data_weight * OP.gram(u) + prior.lam * u,
                               data_weight * OP.adjoint(y), tol=1e-9, maxiter=500).x
    common = {"sigma_mu_per_mm": sigma, "data_weight": data_weight,
              "enforce_nonnegative": False, "rtol": 1e-9}
    results = {
        "admm": pnp_admm(y, OP, prior, max_iter=150, **common),
        "admm old": pnp_admm(y, OP, prior, max_iter=150, **common, **LEGACY_SETTINGS),
        "drs": pnp_drs(y, OP, prior, max_iter=150, **common),
        "pgd": pnp_pgd(y, OP, prior, max_iter=600, **common),
    }
    for name, result in results.items():
        error = float((result.x - exact).norm() / exact.norm())
        assert error < 1e-3, (name, error)


def test_relaxation_reaches_the_fixed_point_in_fewer_iterations(y):
    prior = _Quadratic(lam=0.05 * OP.norm() ** 2)
    exact = conjugate_gradient(lambda u: OP.gram(u) + prior.lam * u, OP.adjoint(y),
                               tol=1e-9, maxiter=500).x
    common = {"sigma_mu_per_mm": 2.0 / OP.norm(), "data_weight": 1.0,
              "enforce_nonnegative": False, "rtol": 0.0, "max_iter": 15, "anderson": 0}
    errors = {alpha: float((pnp_admm(y, OP, prior, relaxation=alpha, **common).x - exact).norm()
                           / exact.norm()) for alpha in (1.0, 1.5)}
    assert errors[1.5] < 0.7 * errors[1.0], errors


@pytest.mark.parametrize("solve", [pnp_admm, pnp_drs])
def test_a_relaxation_stored_with_the_dose_rule_is_the_default(y, solve):
    """A prior whose card stores ``relaxation`` with its PnP-ADMM rule gets it (DRS shares
    ADMM's entry); without one the solvers' default; a bad one is refused by name."""
    prior = _Quadratic(lam=0.05 * OP.norm() ** 2)
    common = {"sigma_mu_per_mm": 2.0 / OP.norm(), "data_weight": 1.0,
              "enforce_nonnegative": False, "rtol": 0.0, "max_iter": 5, "anderson": 0}
    plain = solve(y, OP, prior, relaxation=1.0, **common).x
    default = solve(y, OP, prior, **common).x
    assert float((plain - default).norm() / plain.norm()) > 1e-3
    prior.card = {"pnp_parameters": {"pnp-admm": {**PnPParameters().to_card(),
                                                  "relaxation": 1.0}}}
    assert torch.equal(solve(y, OP, prior, **common).x, plain)
    assert torch.equal(solve(y, OP, prior, relaxation=DEFAULT_RELAXATION, **common).x, default)
    prior.card["pnp_parameters"]["pnp-admm"]["relaxation"] = 2.5
    with pytest.raises(ValueError, match=r"pnp_parameters\.pnp-.*relaxation must be in"):
        solve(y, OP, prior, **common)


@pytest.mark.parametrize("solve", [pnp_admm, pnp_drs])
def test_accelerated_splittings_reach_the_known_fixed_point_sooner(y, solve):
    prior = _Quadratic(lam=0.05 * OP.norm() ** 2)
    exact = conjugate_gradient(lambda u: OP.gram(u) + prior.lam * u, OP.adjoint(y),
                               tol=1e-9, maxiter=500).x
    common = {"sigma_mu_per_mm": 2.0 / OP.norm(), "data_weight": 1.0, "cg_tol": 1e-9,
              "cg_maxiter": 50, "enforce_nonnegative": False, "rtol": 0.0, "max_iter": 12}
    errors = {m: float((solve(y, OP, prior, anderson=m, **common).x - exact).norm()
                       / exact.norm()) for m in (0, 3)}
    assert errors[3] < 0.2 * errors[0], errors


def test_bad_step_settings_are_refused(y):
    prior = _Quadratic(1.0)
    with pytest.raises(ValueError, match="relaxation"):
        pnp_admm(y, OP, prior, relaxation=2.0)
    with pytest.raises(ValueError, match="preconditioner"):
        pnp_drs(y, OP, prior, preconditioner="jacobi", max_iter=1)


def test_diagonal_pdhg_steps_reach_a_lower_tv_objective_in_fewer_iterations(y):
    """Same objective (the weight is given): 150 diagonal iterations get lower than 600
    balanced ones."""
    from ctpnp.solvers import tv

    runs = {rule: tv(y, OP, weight_mm=0.05, max_iter=150, rtol=0.0, steps=rule)
            for rule in ("balanced", "diagonal")}
    final = {rule: float(run.history["objective"][-1, 0]) for rule, run in runs.items()}
    assert final["diagonal"] < final["balanced"], final
    longer = tv(y, OP, weight_mm=0.05, max_iter=600, rtol=0.0, steps="balanced")
    assert final["diagonal"] < float(longer.history["objective"][-1, 0])
    with pytest.raises(ValueError, match="steps"):
        tv(y, OP, steps="scalar")
