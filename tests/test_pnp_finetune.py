"""Fine-tuning the Prox-denoiser on PnP iterates (restarted JFB on the network's weights)."""

import dataclasses
import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.phantoms import random_anatomy
from ctpnp.priors import load
from ctpnp.priors.normalization import mu_to_unit, sigma_mu_to_unit
from ctpnp.priors.prox_denoiser import hessian_spectral_norm
from ctpnp.priors.registry import shipped_weights
from ctpnp.priors.weights import card_path
from ctpnp.simulation import phantom_scan
from ctpnp.solvers import pnp_admm
from ctpnp.solvers.parameters import learned_parameters
from ctpnp.train.pnp_finetune import PnPFinetuneConfig, finetune_on_pnp
from ctpnp.train.pnp_scans import scan_set

TINY = PnPFinetuneConfig(image_size=64, pixel_mm=3.2, n_views=90, photons=(2e4,),
                         phantom_seeds=(3,), real_patients=(), steps=6, batch_size=1,
                         start_iterations=4, warm_iterations=1, learning_rate=1e-4,
                         cg_maxiter=4, checkpoint_every=2, progress_every=1)


def test_a_loaded_prior_is_frozen_and_differentiable_in_its_weights_once_unfrozen():
    prior = load("prox")
    x = physics.hu_to_mu(torch.zeros(1, 1, 32, 32)) + 1e-3 * torch.randn(1, 1, 32, 32)
    with torch.enable_grad():
        assert not prior.prox(x, 0.002).requires_grad  # inference builds no graph
        prior.network.requires_grad_(True)
        prior.prox(x, 0.002).pow(2).sum().backward()
    grads = [p.grad for p in prior.network.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_fine_tuning_improves_pnp_on_its_training_scan(tmp_path):
    out = tmp_path / "tuned.safetensors"
    events = []
    record = finetune_on_pnp(shipped_weights("prox"), out, TINY, progress=events.append)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4, 6]
    assert record["steps"] == 6 and len(record["history"]) == 6
    card = json.loads(card_path(out).read_text())
    assert card["pnp_finetune"]["from_sha256"] == json.loads(
        card_path(shipped_weights("prox")).read_text())["sha256"]
    assert card["pnp_finetune"]["data"]["phantom_seeds"] == [3]
    assert "validation" not in card  # the old network's measurements do not hold

    geometry = ScanGeometry.clinical_fan((64, 64), 3.2, 90)
    op = Tomography(geometry)
    y, hu = phantom_scan(random_anatomy(3, fov_mm=64 * 3.2), geometry, 2e4, 300)

    def error_hu2(weights) -> float:
        prior = load(weights)
        assert not any(p.requires_grad for p in prior.network.parameters())
        sigma, weight = learned_parameters(prior, "pnp-admm").settings(
            physics.estimate_noise_variance(y))
        x = pnp_admm(y, op, prior, sigma_mu_per_mm=sigma, data_weight=weight, max_iter=15).x
        return float((physics.mu_to_hu(x) - hu).pow(2).mean())

    assert error_hu2(out) < 0.95 * error_hu2(shipped_weights("prox"))


def test_the_hessian_penalty_holds_the_relaxed_network_s_curvature_down(tmp_path):
    penalized = dataclasses.replace(TINY, steps=4, hessian_weight=1e5, hessian_target=0.2,
                                    hessian_patch=32, hessian_power_iters=4)
    record = finetune_on_pnp(shipped_weights("prox"), tmp_path / "p.safetensors", penalized)
    assert all(row["hessian_norm_max"] > 0 for row in record["history"])
    finetune_on_pnp(shipped_weights("prox"), tmp_path / "u.safetensors",
                    dataclasses.replace(TINY, steps=4))
    geometry = ScanGeometry.clinical_fan((64, 64), 3.2, 90)
    _, hu = phantom_scan(random_anatomy(3, fov_mm=64 * 3.2), geometry, 2e4, 300)
    u = mu_to_unit(physics.hu_to_mu(hu))
    sigma_40_hu = physics.hu_to_mu(torch.tensor([40.0])) - physics.hu_to_mu(torch.tensor([0.0]))
    sigma_unit = sigma_mu_to_unit(sigma_40_hu)

    def largest_norm(weights) -> float:
        network = load(weights).network
        return float(hessian_spectral_norm(network, u, sigma_unit, 30,
                                           generator=torch.Generator().manual_seed(0))[0])

    assert largest_norm(tmp_path / "p.safetensors") < 0.95 * largest_norm(
        tmp_path / "u.safetensors")


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, run_until_checkpoint):
    config = dataclasses.replace(TINY, steps=4)
    full = tmp_path / "full" / "w.safetensors"
    finetune_on_pnp(shipped_weights("prox"), full, config)
    part = tmp_path / "part" / "w.safetensors"
    run_until_checkpoint(partial(finetune_on_pnp, shipped_weights("prox"), part, config), 2)
    assert not part.exists()
    finetune_on_pnp(shipped_weights("prox"), part, config)
    a, b = load_file(str(full)), load_file(str(part))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_bad_settings_and_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lung2"):
        PnPFinetuneConfig(real_patients=("lung1", "lung2"))
    with pytest.raises(ValueError, match="batch_size"):
        PnPFinetuneConfig(batch_size=0)
    with pytest.raises(ValueError, match="hessian_patch"):
        PnPFinetuneConfig(image_size=64, hessian_patch=128)
    with pytest.raises(ValueError, match=r"'lpn'.*Prox-denoiser"):
        finetune_on_pnp(shipped_weights("lpn"), tmp_path / "x.safetensors", TINY)
    op = Tomography(ScanGeometry.clinical_fan((64, 64), 3.2, 90))
    with pytest.raises(ValueError, match="real slice 0 has shape"):
        scan_set(op, "pnp-admm", (1e4,), real_slices_hu=[torch.zeros(32, 32).numpy()])
