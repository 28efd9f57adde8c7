"""The training recipes of ``pipelines/train_priors.py`` and their CPU shortening."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import load_pipeline

from ctpnp.train.lpn import LPNTrainConfig
from ctpnp.train.pnp_finetune import PnPFinetuneConfig
from ctpnp.train.prox_denoiser import ProxTrainConfig


@pytest.fixture(scope="module")
def recipes():
    return load_pipeline("train_priors.py")


def test_scaled_shortens_every_stage_and_keeps_the_rest(recipes):
    lpn = recipes.scaled(recipes.LPN_RECIPE, 0.01)
    assert isinstance(lpn, LPNTrainConfig)
    assert [s.steps for s in lpn.stages] == [round(s.steps * 0.01)
                                             for s in recipes.LPN_RECIPE.stages]
    assert [(s.loss, s.lr) for s in lpn.stages] == [(s.loss, s.lr)
                                                    for s in recipes.LPN_RECIPE.stages]
    penalty = replace(recipes.PROX_CPU_RECIPE, finetune_steps=100)
    tiny = recipes.scaled(penalty, 1e-6)
    assert isinstance(tiny, ProxTrainConfig)
    assert (tiny.l2_steps, tiny.finetune_steps) == (1, 1)  # a stage keeps at least one step
    assert recipes.scaled(recipes.PROX_CPU_RECIPE, 1e-6).finetune_steps == 0  # absent stays
    assert tiny.unet == recipes.PROX_CPU_RECIPE.unet
    assert tiny.real_patients == recipes.PROX_CPU_RECIPE.real_patients
    pnp = recipes.scaled(recipes.PROX_PNP_RECIPE, 0.01)
    assert isinstance(pnp, PnPFinetuneConfig)
    assert pnp.steps == round(recipes.PROX_PNP_RECIPE.steps * 0.01)
    assert replace(pnp, steps=recipes.PROX_PNP_RECIPE.steps) == recipes.PROX_PNP_RECIPE


def test_a_non_positive_steps_scale_is_refused_before_anything_is_written(recipes, tmp_path,
                                                                         capsys):
    with pytest.raises(SystemExit):
        recipes.main(["--out", str(tmp_path / "out"), "--steps-scale", "0"])
    assert "--steps-scale" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_shipped_prox_denoiser_was_trained_by_the_cpu_recipe_and_relaxed(recipes):
    from ctpnp.priors import load

    card = load("prox").card
    assert ProxTrainConfig.from_dict(card["training"]["config"]) == recipes.PROX_CPU_RECIPE
    relaxed = card["validation"]["relaxed"]
    assert relaxed["target_norm"] == recipes.PROX_RELAX_TARGET
    assert card["relaxation"] == relaxed["relaxation"]
    assert all(0.0 < knot["gamma"] <= 1.0 for knot in relaxed["knots"])
    assert any(knot["hessian_norm_before"] > 1.0 for knot in relaxed["knots"])
    assert all(knot["hessian_norm"] < 1.0 for knot in relaxed["knots"])
    assert relaxed["val_max_hessian_norm"] < 1.0 < relaxed["hessian_norm_before"]


def test_the_shipped_patch_mixture_was_fitted_by_its_recipes_on_training_patients_only(recipes):
    from ctpnp.data import SPLITS
    from ctpnp.priors import load

    card = load("gmm").card
    real, phantom = card["training"]["parts"]
    assert real["training"]["config"] == recipes.GMM_RECIPE.to_dict()
    assert phantom["training"]["config"] == recipes.GMM_PHANTOM_RECIPE.to_dict()
    assert (real["share"], phantom["share"]) == (1 - recipes.GMM_PHANTOM_SHARE,
                                                 recipes.GMM_PHANTOM_SHARE)
    assert card["architecture"]["components"] == (recipes.GMM_RECIPE.components
                                                  + recipes.GMM_PHANTOM_RECIPE.components)
    assert real["training"]["stopped"] == "log-likelihood gain below tol_nats"
    trained_on = {p["patient"] for p in card["data"]["real_patients"]}
    validated_on = {p["patient"] for p in card["validation"]["patients"]}
    assert trained_on == set(SPLITS["train"]) and validated_on == set(SPLITS["validation"])
    phantom_seeds = set(card["data"]["train_seeds"])
    assert max(phantom_seeds) < min(card["validation"]["seeds"])
    # an exact prox by construction; its Jacobian's largest eigenvalue on the validation
    # crops is recorded and close to the 2 below which ||Hess g|| < 1 (README, GMM section)
    assert 1.0 < card["validation"]["val_max_jacobian_eigenvalue"] < 2.2
    assert card["validation"]["val_psnr_db"] > real["validation"]["val_psnr_db"]
    assert card["validation"]["val_psnr_db"] > card["validation"]["val_noisy_psnr_db"] + 10
    assert recipes.scaled(recipes.GMM_RECIPE, 0.1).iterations == 4
