"""Prox-denoiser trainer, training devices and the patch sampler."""

import itertools
import json
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ctpnp.priors import ProxDenoiserPrior, load
from ctpnp.priors.unet import UNetConfig
from ctpnp.train.data import PatchSampler
from ctpnp.train.device import training_device
from ctpnp.train.prox_denoiser import ProxTrainConfig, psnr_by_noise_band, train_prox_denoiser

TINY = ProxTrainConfig(
    unet=UNetConfig(channels=(4, 8), blocks=1),
    patch_size=16,
    batch_size=4,
    penalty_batch=2,
    l2_steps=3,
    finetune_steps=3,
    stop_below=1e-6,  # never met: the run goes through every step
    power_iters=2,
    check_every=1,
    val_power_iters=2,
    n_val_patches=4,
    train_seeds=(0,),
    val_seeds=(1,),
    slice_size=48,
    checkpoint_every=2,
    progress_every=1,
)


def test_train_writes_card_with_device_and_a_loadable_prior(tmp_path):
    events = []
    out = train_prox_denoiser(TINY, tmp_path / "tiny.safetensors", progress=events.append)
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["training"]["steps"] == 6 and card["training"]["finetune_steps_run"] == 3
    assert card["training"]["device"]["type"] == "cpu"
    assert ProxTrainConfig.from_dict(card["training"]["config"]) == TINY
    assert [e["step"] for e in events if e["event"] == "validation"] == [3, 4, 5]
    assert isinstance(load(out), ProxDenoiserPrior)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, run_until_checkpoint):
    full = train_prox_denoiser(TINY, tmp_path / "full" / "w.safetensors")

    part = tmp_path / "part" / "w.safetensors"
    run_until_checkpoint(partial(train_prox_denoiser, TINY, part), 4)
    assert not part.exists()
    train_prox_denoiser(TINY, part)
    a, b = load_file(str(full)), load_file(str(part))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_training_device_names_what_is_missing():
    assert training_device("cpu") == torch.device("cpu")
    for name in ("meta", "gpu"):  # another device type; a name torch does not know
        with pytest.raises(ValueError, match="'cpu' or 'cuda"):
            training_device(name)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            training_device("cuda")


def test_patch_sampler_draws_sub_blocks_of_the_slices():
    # slices whose HU values encode (slice, row, column): every patch must be one
    # contiguous block of one slice, up to its rot90/flip augmentation
    shapes = [(20, 30), (40, 24)]
    slices = [1000.0 * k + np.arange(h * w, dtype=np.float32).reshape(h, w) / 10
              for k, (h, w) in enumerate(shapes)]
    sampler = PatchSampler(slices, 8, torch.Generator().manual_seed(3), min_std_unit=0.0)
    patches = sampler.sample(200)
    assert patches.shape == (200, 1, 8, 8)
    unit = [torch.as_tensor((s + 1000.0) / 2000.0) for s in slices]
    seen_slices = set()
    for patch in patches[:, 0]:
        matches = []
        for k, image in enumerate(unit):
            for view in _augmentations(patch):
                r, c = np.unravel_index(int((image - view[0, 0]).abs().argmin()), image.shape)
                block = image[r : r + 8, c : c + 8]
                if block.shape == (8, 8) and torch.allclose(block, view):
                    matches.append(k)
        assert matches, "a patch is not a block of any slice"
        seen_slices.update(matches)
    assert seen_slices == {0, 1}


def _augmentations(patch: torch.Tensor) -> list[torch.Tensor]:
    views = [torch.rot90(patch, k, dims=(0, 1)) for k in range(4)]
    return views + [v.flip(1) for v in views]


def test_keep_best_writes_the_best_admissible_check_and_survives_a_resume(
        tmp_path, run_until_checkpoint):
    # every check admissible: the kept weights are those of the best-PSNR check;
    # a strong penalty at a high rate makes that check an early one
    config = replace(TINY, keep_best=True, stop_below=1e6, finetune_steps=5,
                     finetune_lr=1e-2, penalty_weight=10.0)
    events = []
    out = train_prox_denoiser(config, tmp_path / "best.safetensors", progress=events.append)
    card = json.loads((tmp_path / "best.json").read_text())
    history = card["training"]["history"]
    assert [h["step"] for h in history] == [3, 4, 5, 6, 7, 8]  # the last step is checked too
    best = max(history, key=lambda h: h["val_psnr_db"])
    assert card["training"]["kept_step"] == best["step"] < 8
    assert card["validation"]["val_psnr_db"] == pytest.approx(best["val_psnr_db"], abs=1e-9)
    assert [e["step"] for e in events if e["event"] == "kept"] == [best["step"]]

    # interrupted after the best check and resumed: the same kept weights
    part = tmp_path / "part" / "best.safetensors"
    run_until_checkpoint(partial(train_prox_denoiser, config, part), 6)
    train_prox_denoiser(config, part)
    a, b = load_file(str(out)), load_file(str(part))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)

    # no check admissible: the last weights, as without keep_best
    never = replace(config, stop_below=1e-6)
    train_prox_denoiser(never, tmp_path / "last.safetensors")
    card = json.loads((tmp_path / "last.json").read_text())
    assert card["training"]["kept_step"] == 8
    assert card["validation"]["val_psnr_db"] == card["training"]["history"][-1]["val_psnr_db"]


def test_relaxation_brings_the_hessian_norm_to_its_target_at_every_knot(tmp_path):
    from ctpnp.train.relaxation import relax_prox_weights

    trained = train_prox_denoiser(replace(TINY, finetune_steps=0), tmp_path / "l2.safetensors")
    before = trained.read_bytes(), (tmp_path / "l2.json").read_text()
    first = relax_prox_weights(trained, tmp_path / "r.safetensors", target_norm=0.9, knots=3)
    target = 0.5 * min(k["hessian_norm_before"] for k in first["knots"])
    record = relax_prox_weights(trained, tmp_path / "r.safetensors", target_norm=target,
                                knots=3)
    assert (trained.read_bytes(), (tmp_path / "l2.json").read_text()) == before
    sigma_hu = [k["sigma_hu"] for k in record["knots"]]
    assert sigma_hu == pytest.approx([10.0, 10.0 * 15**0.5, 150.0])  # TINY's range, geometric
    for knot in record["knots"]:
        assert knot["gamma"] == pytest.approx(target / knot["hessian_norm_before"])
        assert knot["hessian_norm"] == pytest.approx(target, rel=1e-4)
    # the levels differ, and so do their factors
    assert len({round(k["gamma"], 6) for k in record["knots"]}) == 3
    prior = load(tmp_path / "r.safetensors")
    assert prior.network.relaxation.gamma == pytest.approx([k["gamma"] for k in record["knots"]])
    assert prior.card["relaxation"] == record["relaxation"]
    assert prior.card["validation"]["relaxed"]["target_norm"] == target
    # a relaxed network relaxes further by the product of the factors
    again = relax_prox_weights(tmp_path / "r.safetensors", tmp_path / "rr.safetensors",
                               target_norm=0.5 * target, knots=3)
    assert [k["gamma"] for k in again["knots"]] == pytest.approx(
        [0.5 * k["gamma"] for k in record["knots"]], rel=1e-4)
    with pytest.raises(ValueError, match="target_norm"):
        relax_prox_weights(trained, tmp_path / "x.safetensors", target_norm=1.0)
    with pytest.raises(ValueError, match="knots"):
        relax_prox_weights(trained, tmp_path / "x.safetensors", knots=0)
    assert not (tmp_path / "x.safetensors").exists()


def test_corpus_patients_join_the_training_and_validation_slices_and_the_card(tmp_path,
                                                                              fake_corpus):
    from ctpnp.data import SOURCES, SPLITS
    from ctpnp.train.data import split_slices_hu

    train, val = SPLITS["train"][:1], SPLITS["validation"][:1]
    fake_corpus((*train, *val))
    config = replace(TINY, real_patients=train, val_patients=val, l2_steps=2, finetune_steps=1)
    slices = split_slices_hu(config)
    assert len(slices) == len(config.train_seeds) + 2  # phantoms first, then both slices
    np.testing.assert_allclose([s.mean() for s in slices[-2:]], [0.0, 100.0], atol=1e-3)
    assert len(split_slices_hu(config, "validation")) == len(config.val_seeds) + 2

    train_prox_denoiser(config, tmp_path / "w.safetensors")
    card = json.loads((tmp_path / "w.json").read_text())
    (record,) = card["data"]["real_patients"]
    assert record["patient"] == train[0]
    assert record["licence"] == SOURCES[train[0]].archive.licence
    assert [r["patient"] for r in card["validation"]["patients"]] == list(val)


def test_a_patient_missing_from_the_cache_is_one_clear_error(tmp_path, monkeypatch):
    from ctpnp.data import DataSourceError

    monkeypatch.setenv("CTPNP_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataSourceError, match="lung1"):
        train_prox_denoiser(replace(TINY, real_patients=("lung1",)), tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_the_l2_rate_decays_along_a_cosine():
    from ctpnp.train.prox_denoiser import _l2_lr

    config = replace(TINY, l2_steps=11, l2_lr=1e-3, l2_lr_final=1e-5)
    rates = [_l2_lr(config, step) for step in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert rates[5] == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert _l2_lr(replace(config, l2_lr=2e-4, l2_lr_final=None), 7) == 2e-4  # constant


def test_contrast_and_offset_jitter_stay_within_their_bounds():
    water = np.zeros((64, 64), dtype=np.float32)  # 0 HU everywhere, bone square
    water[20:40, 20:40] = 1000.0
    gen = torch.Generator().manual_seed(0)
    sampler = PatchSampler([water], 64, gen, jitter_scale=0.1, jitter_offset_hu=20.0)
    hu = sampler.sample(200) * 2000.0 - 1000.0  # back to HU
    water_hu, bone_hu = hu[:, 0, 0, 0], hu.amax(dim=(1, 2, 3))
    assert water_hu.abs().max() <= 20.0 + 1e-3 and water_hu.std() > 5.0
    contrast = bone_hu - water_hu
    assert contrast.min() >= 900.0 - 1e-2 and contrast.max() <= 1100.0 + 1e-2
    assert contrast.std() > 20.0


def test_the_validation_psnr_per_noise_band_splits_the_levels_and_agrees_with_the_whole():
    gen = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.05, 0.005, 0.03, 0.075, 0.01, 0.02, 0.04])  # unsorted on purpose
    clean = torch.rand(7, 1, 8, 8, generator=gen)
    denoised = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=gen)
    bands = psnr_by_noise_band(denoised, clean, sigma)
    assert list(bands) == ["10-40 HU", "60-80 HU", "100-150 HU"]  # sizes 3, 2, 2
    assert list(bands.values()) == sorted(bands.values(), reverse=True)
    sizes = torch.tensor([3.0, 2.0, 2.0])
    mse = torch.tensor([10 ** (-v / 10) for v in bands.values()])
    whole = float((denoised - clean).pow(2).mean())
    assert float((mse * sizes).sum() / sizes.sum()) == pytest.approx(whole, rel=1e-5)
