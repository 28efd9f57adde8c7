"""Weights files: safetensors + model card, no pickle, no network, clear errors."""

import hashlib
import json
import pickle
import shutil
import socket
import struct

import pytest
import torch

from ctpnp.priors import LPN, LPNPrior, load
from ctpnp.priors.icnn import ICNNConfig
from ctpnp.priors.registry import fingerprint, shipped_weights
from ctpnp.priors.weights import card_path, save_weights


def _forbid(*_args, **_kwargs):
    raise AssertionError("weights loading must not use pickle or the network")


@pytest.fixture
def no_pickle_no_network(monkeypatch):
    monkeypatch.setattr(torch, "load", _forbid)
    monkeypatch.setattr(pickle, "load", _forbid)
    monkeypatch.setattr(pickle, "loads", _forbid)
    monkeypatch.setattr(socket.socket, "connect", _forbid)
    monkeypatch.setattr(socket, "create_connection", _forbid)


def _tiny_weights(path, **card_extra):
    net = LPN(ICNNConfig(patch_size=8, channels=4, strides=(2,), out_channels=4), alpha=0.01)
    card = {"model": "lpn", "architecture": {**net.architecture(), "stride": 4},
            "sigma_train_unit": 0.05, **card_extra}
    return save_weights(path, net.state_dict(), card), net


def test_shipped_lpn_is_plain_safetensors():
    path = shipped_weights("lpn")
    raw = path.read_bytes()
    assert path.stat().st_size + card_path(path).stat().st_size < 2_000_000
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    assert max(ends) == len(raw) - 8 - n  # tensors fill the file: nothing else hides in it
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F32"}
    card = json.loads(card_path(path).read_text())
    for key in ("architecture", "normalization", "data", "training", "validation",
                "sigma_train_unit", "ctpnp_version"):
        assert key in card, key
    assert card["data"]["extra_slices"] == 0  # generated phantoms only


def test_shipped_lpn_loads_without_pickle_or_network(no_pickle_no_network):
    prior = load("lpn")
    assert isinstance(prior, LPNPrior)
    x = torch.full((1, 1, 32, 32), 0.0192)
    assert torch.isfinite(prior.prox(x, 0.001)).all()


def test_roundtrip_from_path(tmp_path, no_pickle_no_network):
    path, net = _tiny_weights(tmp_path / "w.safetensors")
    prior = load(path)
    for name, value in net.state_dict().items():
        torch.testing.assert_close(prior.network.state_dict()[name], value)


def test_corrupt_file_names_the_file(tmp_path):
    path, _ = _tiny_weights(tmp_path / "w.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"w\.safetensors.*(corrupt|sha256)"):
        load(path)


def test_truncated_file_with_matching_checksum_is_reported(tmp_path):
    path, _ = _tiny_weights(tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:40])
    card = json.loads(card_path(path).read_text())
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"w\.safetensors.*not a valid safetensors"):
        load(path)


def test_architecture_mismatch_is_reported(tmp_path):
    path, _ = _tiny_weights(tmp_path / "w.safetensors")
    card = json.loads(card_path(path).read_text())
    card["architecture"]["icnn"]["channels"] = 6
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"w\.safetensors.*shape"):
        load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("architecture"), "not a valid LPN card"),
        (lambda c: c.update(model="unknown-net"), "does not know"),
        (lambda c: c.update(format="other/9"), "not a ctpnp-weights"),
    ],
)
def test_bad_cards_are_reported(tmp_path, edit, message):
    path, _ = _tiny_weights(tmp_path / "w.safetensors")
    card = json.loads(card_path(path).read_text())
    edit(card)
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=message):
        load(path)


def test_missing_card_and_unknown_names(tmp_path):
    path, _ = _tiny_weights(tmp_path / "w.safetensors")
    card_path(path).unlink()
    with pytest.raises(ValueError, match="no model card"):
        load(path)
    with pytest.raises(ValueError, match="unknown prior"):
        load("no-such-prior")


def test_fingerprint_follows_the_model_card(tmp_path):
    assert fingerprint("tv") == "code"
    copy = tmp_path / "lpn.safetensors"
    shutil.copy(shipped_weights("lpn"), copy)
    shutil.copy(card_path(shipped_weights("lpn")), card_path(copy))
    assert fingerprint(copy) == fingerprint("lpn")
    card = json.loads(card_path(copy).read_text())
    card["pnp_parameters"]["pnp-admm"]["log_sigma_hu"] += 0.1  # another default rule
    card_path(copy).write_text(json.dumps(card))
    assert fingerprint(copy) != fingerprint("lpn")
    card_path(copy).unlink()
    with pytest.raises(ValueError, match="no model card"):
        fingerprint(copy)


@pytest.mark.parametrize("name", ["lpn", "prox"])
def test_learned_proxes_run_their_convolutions_without_tf32(name):
    """cuDNN's TF32 is off inside each learned prox (and restored after): on a GPU the
    networks compute what they compute on the CPU. The setting is recorded from a hook
    on the network's first convolution, so it holds on any device."""
    prior = load(name)
    seen = []
    first_conv = next(m for m in prior.network.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(
        lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
    torch.backends.cudnn.allow_tf32 = True
    try:
        prior.prox(torch.full((1, 1, 32, 32), 0.02), 0.001)
    finally:
        hook.remove()
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32
