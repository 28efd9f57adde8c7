"""Prox-denoiser: D = Id - grad g, shipped model has ||Hess g|| < 1, it denoises, weights I/O."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from test_priors_weights import no_pickle_no_network  # noqa: F401 (fixture)

from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu
from ctpnp.priors import GradientStepDenoiser, ProxDenoiserPrior, load
from ctpnp.priors.prox_denoiser import hessian_spectral_norm
from ctpnp.priors.registry import shipped_weights
from ctpnp.priors.weights import card_path
from ctpnp.train.data import phantom_slices_hu
from ctpnp.train.prox_denoiser import ProxTrainConfig, validation_patches

HELD_OUT_SEEDS = (400_000, 400_001)  # neither training nor validation seeds of the shipped model


@pytest.fixture(scope="module")
def prior() -> ProxDenoiserPrior:
    torch.set_num_threads(1)
    return load("prox")


def test_shipped_hessian_norm_below_one_on_held_out_patches(prior):
    config = ProxTrainConfig.from_dict(prior.card["training"]["config"])
    assert not set(HELD_OUT_SEEDS) & {*config.train_seeds, *config.val_seeds}
    _, noisy, sigma = validation_patches(replace(config, val_seeds=HELD_OUT_SEEDS), n=24, seed=99)
    norms = hessian_spectral_norm(
        prior.network, noisy, sigma, n_iter=30, generator=torch.Generator().manual_seed(1)
    )
    assert torch.isfinite(norms).all()
    assert float(norms.max()) < 1.0, norms
    assert float(norms.max()) > 0.05  # a real, non-trivial Hessian was measured


def test_denoiser_is_identity_minus_gradient_of_g(prior):
    net = GradientStepDenoiser(prior.network.config)
    net.load_state_dict(prior.network.state_dict())
    net = net.double()
    g = torch.Generator().manual_seed(3)
    u = 0.5 + 0.1 * torch.randn(2, 1, 15, 14, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.05], dtype=torch.float64)
    residual = u - net(u, sigma)  # should be grad g
    for _ in range(3):
        v = torch.randn(u.shape, generator=g, dtype=torch.float64)
        h = 1e-5
        fd = (net.g(u + h * v, sigma) - net.g(u - h * v, sigma)) / (2 * h)
        torch.testing.assert_close((residual * v).flatten(1).sum(1), fd, rtol=1e-6, atol=1e-9)


def test_relaxed_denoiser_steps_gamma_times_the_gradient(prior):
    full, relaxed = (GradientStepDenoiser(prior.network.config, relaxation=gamma)
                     for gamma in (1.0, 0.4))
    for network in (full, relaxed):
        network.load_state_dict(prior.network.state_dict())
    g = torch.Generator().manual_seed(5)
    u = 0.5 + 0.1 * torch.randn(2, 1, 24, 24, generator=g)
    sigma = torch.tensor([0.01, 0.05])
    torch.testing.assert_close(relaxed(u, sigma), u - 0.4 * (u - full(u, sigma)))
    torch.testing.assert_close(relaxed.g(u, sigma), 0.4 * full.g(u, sigma))
    norms = [hessian_spectral_norm(n, u, sigma, n_iter=8,
                                   generator=torch.Generator().manual_seed(1))
             for n in (full, relaxed)]
    torch.testing.assert_close(norms[1], 0.4 * norms[0])


def test_relaxation_per_noise_level_interpolates_in_log_sigma(prior):
    from ctpnp.priors.relaxation import Relaxation

    table = Relaxation.from_card({"sigma_hu": [20.0, 80.0], "gamma": [0.9, 0.5]})
    sigma = torch.tensor([10.0, 20.0, 40.0, 80.0, 150.0]) / 2000.0
    torch.testing.assert_close(table(sigma), torch.tensor([0.9, 0.9, 0.7, 0.5, 0.5]))
    assert Relaxation.from_card(table.to_card()) == table
    assert Relaxation.from_card(0.4).to_card() == 0.4

    full, relaxed = (GradientStepDenoiser(prior.network.config, relaxation=r)
                     for r in (1.0, table))
    for network in (full, relaxed):
        network.load_state_dict(prior.network.state_dict())
    u = 0.5 + 0.1 * torch.randn(3, 1, 24, 24, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([20.0, 40.0, 80.0]) / 2000.0  # one batch, three levels
    gamma = torch.tensor([0.9, 0.7, 0.5]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(relaxed(u, sigma), u - gamma * (u - full(u, sigma)))

    for bad in ({"sigma_hu": [80.0, 20.0], "gamma": [0.9, 0.5]},
                {"sigma_hu": [20.0], "gamma": [0.9, 0.5]},
                {"sigma_hu": [20.0, 80.0], "gamma": [0.9, 1.5]}):
        with pytest.raises(ValueError, match="relaxation"):
            Relaxation.from_card(bad)


def _held_out_mu(size: int = 96) -> torch.Tensor:
    (hu,) = phantom_slices_hu(HELD_OUT_SEEDS[:1], 512)
    c = (512 - size) // 2
    return hu_to_mu(torch.as_tensor(hu[c : c + size, c : c + size]))[None, None]


def _psnr(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    mse = (a - ref).pow(2).flatten(1).mean(1)
    return 10 * torch.log10((2 * MU_WATER_PER_MM) ** 2 / mse)


def test_prox_denoises_in_its_range_with_per_image_sigma(prior):
    clean = _held_out_mu().repeat(3, 1, 1, 1)
    sigma = torch.tensor([25.0, 60.0, 120.0]) / 1000.0 * MU_WATER_PER_MM
    g = torch.Generator().manual_seed(4)
    noisy = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g)
    out, value = prior.prox_and_potential(noisy, sigma)
    assert out.shape == noisy.shape and value.shape == (3,)
    gain = _psnr(out, clean) - _psnr(noisy, clean)
    # the shipped network is relaxed (gamma < 1, an exact prox): it removes less
    # noise in one step than the L2 network would, more so at low sigma
    assert (gain > 1.5).all() and (gain.diff() > 0).all(), gain
    torch.testing.assert_close(prior.prox(noisy, sigma), out)
    for k in range(3):  # each image is denoised at its own sigma
        torch.testing.assert_close(prior.prox(noisy[k:k + 1], sigma[k]), out[k:k + 1],
                                   rtol=1e-4, atol=1e-6)


def test_potential_and_map(prior):
    clean = _held_out_mu(64)
    noisy = clean + 100 / 1000 * MU_WATER_PER_MM * torch.randn(
        clean.shape, generator=torch.Generator().manual_seed(5)
    )
    assert prior.potential(noisy) > prior.potential(clean)
    x = torch.cat([clean, noisy])
    pmap = prior.log_prior_map(x)
    assert pmap.shape == x.shape
    _, value = prior.prox_and_potential(x, prior.sigma_ref_unit * 2 * MU_WATER_PER_MM)
    torch.testing.assert_close(pmap.flatten(1).sum(1), value, rtol=1e-4, atol=1e-3)


@pytest.mark.usefixtures("no_pickle_no_network")
def test_shipped_loads_without_pickle_or_network():
    prior = load("prox")
    assert isinstance(prior, ProxDenoiserPrior)
    card = prior.card
    for key in ("normalization", "data", "training", "validation", "sigma_range_hu"):
        assert key in card, key
    assert card["data"]["extra_slices"] == 0
    path = shipped_weights("prox")
    assert path.stat().st_size + card_path(path).stat().st_size < 10_000_000  # the cap


def _copy_shipped(tmp_path):
    path = tmp_path / "p.safetensors"
    shutil.copy(shipped_weights("prox"), path)
    shutil.copy(card_path(shipped_weights("prox")), card_path(path))
    return path


def _edit_card(path, edit):
    card = json.loads(card_path(path).read_text())
    edit(card)
    card_path(path).write_text(json.dumps(card))


def test_corrupt_weights_are_reported(tmp_path):
    path = _copy_shipped(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"p\.safetensors.*(corrupt|sha256)"):
        load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["architecture"].update(channels=[*c["architecture"]["channels"][:-1],
                                                      c["architecture"]["channels"][-2]]),
         r"p\.safetensors.*shape"),
        (lambda c: c["architecture"].update(blocks=c["architecture"]["blocks"] + 1),
         r"p\.safetensors.*missing"),
        (lambda c: c.pop("sigma_range_unit"), "not a valid Prox-denoiser card"),
        (lambda c: c.update(relaxation=1.5), r"p\.safetensors.*relaxation gamma must lie in"),
        (lambda c: c.update(relaxation={"sigma_hu": [50.0, 20.0], "gamma": [0.9, 0.8]}),
         r"p\.safetensors.*increasing"),
    ],
)
def test_mismatched_cards_are_reported(tmp_path, edit, message):
    path = _copy_shipped(tmp_path)
    _edit_card(path, edit)
    with pytest.raises(ValueError, match=message):
        load(path)
