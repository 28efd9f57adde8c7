"""Learned PnP parameters: implicit gradients, the dose rule in model cards, restarted JFB."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.phantoms import random_anatomy
from ctpnp.priors import load
from ctpnp.priors.registry import shipped_weights
from ctpnp.priors.weights import card_path
from ctpnp.simulation import phantom_scan
from ctpnp.solvers import pnp_admm
from ctpnp.solvers.common import pnp_settings
from ctpnp.solvers.data_fidelity import LeastSquares
from ctpnp.solvers.parameters import (
    PnPParameters,
    fit_dose_rule,
    learned_parameters,
    learned_relaxation,
    log_linear_in_variance,
)
from ctpnp.solvers.tv import default_weight_mm, weight_rule
from ctpnp.train.pnp_parameters import (
    PnPTrainConfig,
    learn_pnp_parameters,
    store_pnp_parameters,
)

SMALL = ScanGeometry.parallel((16, 16), 1.0, 24)


def _central_difference(function, point: torch.Tensor, direction: torch.Tensor,
                        eps: float) -> float:
    with torch.no_grad():
        return float((function(point + eps * direction) - function(point - eps * direction))
                     / (2 * eps))


def test_data_prox_gradient_matches_finite_differences():
    torch.manual_seed(0)
    op = Tomography(SMALL)
    data = LeastSquares(op, op.forward(torch.rand(2, 1, 16, 16)))
    v = torch.rand(2, 1, 16, 16, requires_grad=True)
    tau = torch.tensor([0.3, 0.05], requires_grad=True)
    probe = torch.randn(2, 1, 16, 16)

    def loss(v_, tau_):
        return (data.prox(v_, tau_, tol=1e-10, maxiter=500).x * probe).sum()

    grad_v, grad_tau = torch.autograd.grad(loss(v, tau), (v, tau))
    direction = torch.randn_like(v)
    assert float((grad_v * direction).sum()) == pytest.approx(
        _central_difference(lambda p: loss(p, tau), v.detach(), direction, 1e-2), rel=1e-2)
    unit = torch.tensor([1.0, 0.0])
    assert float(grad_tau[0]) == pytest.approx(
        _central_difference(lambda t: loss(v, t), tau.detach(), unit, 5e-3), rel=2e-2)


def test_prox_denoiser_is_differentiable_in_sigma_and_detached_without_grad():
    prior = load("prox")
    x = 0.0192 * torch.rand(1, 1, 32, 32)
    sigma = torch.tensor(0.002, requires_grad=True)
    (grad,) = torch.autograd.grad(prior.prox(x, sigma).sum(), sigma)
    numeric = _central_difference(lambda s: prior.prox(x, s).sum(), sigma.detach(),
                                  torch.tensor(1.0), 2e-5)
    assert float(grad) == pytest.approx(numeric, rel=1e-2)
    with torch.no_grad():
        assert not prior.prox(x, sigma).requires_grad


def test_the_dose_rule_in_a_model_card_becomes_the_default(tmp_path):
    source = shipped_weights("prox")
    weights = tmp_path / source.name
    shutil.copy(source, weights)
    shutil.copy(card_path(source), card_path(weights))
    rule = PnPParameters(math.log(40.0), -0.5, math.log(0.2), 0.25)
    store_pnp_parameters(weights, "pnp-admm", rule, {"method": "test"})
    prior = load(weights)
    assert learned_parameters(prior, "pnp-admm") == rule
    assert learned_parameters(prior, "pnp-drs") == rule  # same fixed points as ADMM
    assert learned_parameters(prior, "pnp-pgd") is None
    assert prior.card["pnp_parameters"]["pnp-admm"]["training"] == {"method": "test"}
    assert learned_relaxation(prior, "pnp-admm") is None  # the solvers' default
    store_pnp_parameters(weights, "pnp-admm", rule, {"method": "test"}, relaxation=1.0)
    assert learned_relaxation(load(weights), "pnp-drs") == 1.0

    y = physics.simulate_low_dose(torch.full((2, 1, 24, 23), 2.0), 1e4, seed=0)
    sigma, weight = pnp_settings(prior, "pnp-admm", y, None, None)
    expected_sigma, expected_weight = rule.settings(physics.estimate_noise_variance(y))
    torch.testing.assert_close(sigma, expected_sigma)
    torch.testing.assert_close(weight, expected_weight)
    # a higher dose (lower variance) means a weaker denoiser under this rule
    assert float(sigma[0]) == pytest.approx(
        40.0 * (float(physics.estimate_noise_variance(y)[0]) / 1e-4) ** -0.5
        * physics.MU_WATER_PER_MM / 1000, rel=1e-4)
    # explicit arguments win over the card
    sigma, weight = pnp_settings(prior, "pnp-admm", y, 0.001, 5.0)
    assert torch.all(sigma == 0.001) and torch.all(weight == 5.0)

    card = json.loads(card_path(weights).read_text())
    del card["pnp_parameters"]["pnp-admm"]["sigma_exponent"]
    card_path(weights).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"pnp_parameters\.pnp-admm"):
        learned_parameters(load(weights), "pnp-admm")


def test_restarted_jfb_improves_deliberately_bad_parameters():
    config = PnPTrainConfig(image_size=64, pixel_mm=3.2, n_views=90, photons=(2e4,),
                            seeds=(101,), steps=8, warm_iterations=2, learning_rate=0.25,
                            cg_maxiter=4)
    prior = load("prox")
    bad = PnPParameters(math.log(150.0), 0.0, math.log(1e-3), 0.0)  # far too smooth
    learned, log = learn_pnp_parameters(prior, config, initial=bad)
    assert len(log) == 8 and all(math.isfinite(entry["loss_hu2"]) for entry in log)
    assert learned.log_data_scale > bad.log_data_scale  # it moved towards the data

    geometry = ScanGeometry.clinical_fan((64, 64), 3.2, 90)
    op = Tomography(geometry)
    # the training scan itself (seed 101, noise seed 101 * 100 + dose index 0)
    y, hu = phantom_scan(random_anatomy(101, fov_mm=64 * 3.2), geometry, 2e4, 10100)

    def quality(rule: PnPParameters) -> float:
        sigma, weight = rule.settings(physics.estimate_noise_variance(y))
        x = pnp_admm(y, op, prior, sigma_mu_per_mm=sigma, data_weight=weight, max_iter=10,
                     cg_maxiter=4).x
        return float(torch.nn.functional.mse_loss(physics.mu_to_hu(x), hu))

    assert quality(learned) < 0.8 * quality(bad)


def test_ctpnp_tune_writes_a_copy_with_the_learned_rule(tmp_path):
    import subprocess
    import sys

    source_card = card_path(shipped_weights("prox")).read_text()
    out = tmp_path / "prox_tuned.safetensors"
    done = subprocess.run([sys.executable, "-m", "ctpnp.cli", "tune", "prox", str(out),
                           "--steps", "2", "--size", "32", "--photons", "2e4"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    card = json.loads(card_path(out).read_text())
    entry = card["pnp_parameters"]["pnp-admm"]
    assert len(entry["training"]["log"]) == 2
    assert learned_parameters(load(out), "pnp-admm") is not None
    shipped_rule = learned_parameters(load("prox"), "pnp-admm")
    assert entry["training"]["initial"] == dataclasses.asdict(shipped_rule)  # refined, not redone
    first = entry["training"]["log"][0]
    assert math.isclose(first["sigma_hu"], physics.mu_difference_to_hu(float(
        shipped_rule.settings(torch.tensor([first["variance"]]))[0][0])), rel_tol=1e-4)
    assert card_path(shipped_weights("prox")).read_text() == source_card  # source untouched
    refused = subprocess.run([sys.executable, "-m", "ctpnp.cli", "tune", str(tmp_path / "none"),
                              str(out)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "none" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_dose_rule_fitted_through_per_dose_choices_reproduces_them():
    variances, sigmas_hu, scales = [3e-4, 2e-5], [60.0, 15.0], [0.4, 0.05]
    rule = fit_dose_rule(variances, sigmas_hu, scales)
    sigma, weight = rule.settings(torch.tensor(variances))
    torch.testing.assert_close(physics.mu_difference_to_hu(sigma),
                               torch.tensor(sigmas_hu), rtol=1e-5, atol=0)
    torch.testing.assert_close(weight * torch.tensor(variances, dtype=torch.float64),
                               torch.tensor(scales, dtype=torch.float64))
    with pytest.raises(ValueError, match="two or more distinct variances"):
        fit_dose_rule([1e-4, 1e-4], [50.0, 40.0], [0.3, 0.3])


def test_tv_default_weight_is_the_rule_fitted_through_its_validation_choices():
    """TV's default is read from the file ``fit_rules.py tv --write`` wrote, which names
    the results it was fitted in; the rule is the least-squares line, in logs, through
    the best weight of each (grid size, dose) group, and misses none of them by more
    than a factor 1.5."""
    rule = weight_rule()
    record = json.loads((Path(__file__).parents[1] / "pipelines" / "calibrate" / "results"
                         / rule["fitted_in"]).read_text())
    assert {k: rule[k] for k in record["rule"]} == record["rule"]
    best = list(record["best"].values())
    variances = torch.tensor([b["variance"] for b in best], dtype=torch.float64)
    chosen_mm = torch.tensor([b["setting"] for b in best], dtype=torch.float64) * variances
    log_c, exponent = log_linear_in_variance(variances.tolist(),
                                             [b["setting"] for b in best])
    assert (log_c, exponent) == pytest.approx(
        (math.log(rule["weight_per_noise_variance_mm"]), rule["weight_exponent"]))
    ratio = default_weight_mm(variances) / chosen_mm
    assert bool((ratio > 1 / 1.5).all() and (ratio < 1.5).all())
