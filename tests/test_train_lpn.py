"""LPN trainer: runs, writes a loadable weights file, resumes exactly after an interruption."""

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from ctpnp.priors import LPNPrior, load
from ctpnp.priors.icnn import ICNNConfig
from ctpnp.train import LPNTrainConfig, Stage, train_lpn

TINY = LPNTrainConfig(
    icnn=ICNNConfig(patch_size=8, channels=4, strides=(2,), out_channels=4),
    batch_size=8,
    stages=(Stage("l1", 4, 1e-3), Stage("proximal_matching", 4, 1e-4, 1.0)),
    phantoms="piecewise_smooth",
    train_seeds=(0, 1),
    val_seeds=(2,),
    slice_size=32,
    checkpoint_every=2,
    progress_every=1,
)


def test_train_writes_card_and_loadable_weights(tmp_path):
    events = []
    out = train_lpn(TINY, tmp_path / "tiny.safetensors", progress=events.append)
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["model"] == "lpn" and card["training"]["steps"] == TINY.total_steps
    assert card["sigma_train_unit"] == TINY.sigma_unit
    assert {"wall_time_s", "history"} <= set(card["training"])
    assert "val_psnr_db" in card["validation"] and "ctpnp_version" in card
    assert LPNTrainConfig.from_dict(card["training"]["config"]) == TINY
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 9))
    assert sum(e["event"] == "validation" for e in events) == len(TINY.stages)
    prior = load(out)
    assert isinstance(prior, LPNPrior)
    for name, value in load_file(str(out)).items():  # convex path stays non-negative
        if name.startswith(("icnn.convex", "icnn.readout.weight")):
            assert value.min() >= 0, name


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, run_until_checkpoint):
    full = train_lpn(TINY, tmp_path / "full" / "w.safetensors")

    part = tmp_path / "part" / "w.safetensors"
    run_until_checkpoint(partial(train_lpn, TINY, part), 6)
    assert not part.exists()
    resumed_events = []
    train_lpn(TINY, part, progress=resumed_events.append)
    assert [e["step"] for e in resumed_events if e["event"] == "step"] == [7, 8]
    a, b = load_file(str(full)), load_file(str(part))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    out = tmp_path / "w.safetensors"
    train_lpn(TINY, out)
    other = LPNTrainConfig(**{**TINY.__dict__, "sigma_unit": 0.1})
    with pytest.raises(ValueError, match="different training config"):
        train_lpn(other, out)
    train_lpn(other, out, resume=False)  # starting afresh is allowed


def test_a_run_can_start_from_other_weights_and_its_card_says_so(tmp_path):
    from dataclasses import replace

    start = train_lpn(TINY, tmp_path / "start.safetensors")
    start_card = json.loads((tmp_path / "start.json").read_text())
    frozen = replace(TINY, stages=(Stage("l1", 2, 0.0),))  # a zero rate keeps the weights
    out = train_lpn(frozen, tmp_path / "next.safetensors", init_from=start)
    a, b = load_file(str(start)), load_file(str(out))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    record = json.loads((tmp_path / "next.json").read_text())["training"]["initialized_from"]
    assert record["weights"] == "start.safetensors"
    assert len(record["sha256"]) == 64 and record["sha256"] == start_card["sha256"]
    assert record["steps"] == TINY.total_steps
    scratch = train_lpn(frozen, tmp_path / "scratch.safetensors")
    assert any(not torch.equal(a[k], v) for k, v in load_file(str(scratch)).items())
    wider = replace(frozen, icnn=replace(TINY.icnn, channels=6))
    with pytest.raises(ValueError, match=r"start\.safetensors"):
        train_lpn(wider, tmp_path / "wider.safetensors", init_from=start)



def test_corpus_patients_join_training_validation_and_the_card(tmp_path, fake_corpus):
    from dataclasses import replace

    from ctpnp.data import SPLITS
    from ctpnp.train.lpn import training_slices, validation_slices

    train, val = SPLITS["train"][:1], SPLITS["validation"][:1]
    fake_corpus((*train, *val), shape=(5, 40, 40))
    config = replace(TINY, real_patients=train, val_patients=val, val_slices_per_patient=1,
                     jitter_scale=0.05, jitter_offset_hu=20.0)
    slices = training_slices(config)
    assert len(slices) == len(TINY.train_seeds) + 5
    assert [round(float(s.mean())) for s in slices[-5:]] == [0, 100, 200, 300, 400]
    (middle,) = validation_slices(config)[len(TINY.val_seeds):]
    assert round(float(middle.mean())) == 200  # the middle of the patient's five slices
    train_lpn(config, tmp_path / "c.safetensors")
    card = json.loads((tmp_path / "c.json").read_text())
    assert [r["patient"] for r in card["data"]["real_patients"]] == list(train)
    assert [r["patient"] for r in card["validation"]["patients"]] == list(val)
    assert LPNTrainConfig.from_dict(card["training"]["config"]) == config
