"""The one registry: every name resolves, the tables agree, priors load on a device."""

import inspect

import pytest
import torch

from ctpnp.cli import build_parser
from ctpnp.priors import available, load
from ctpnp.registry import LEARNABLE_METHODS, METHODS, PNP_METHODS, PRIORS, resolve, solver
from ctpnp.solvers import SPLITTINGS


def test_every_method_resolves_and_pnp_methods_take_a_prior():
    for name in METHODS:
        parameters = inspect.signature(solver(name)).parameters
        assert ("prior" in parameters) == (name in PNP_METHODS), name
    assert set(LEARNABLE_METHODS) == set(SPLITTINGS)
    with pytest.raises(ValueError, match="pnp_admm"):
        solver("pnp_admm")  # one spelling


def test_the_command_line_offers_the_registry():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    method = next(a for a in commands["reconstruct"]._actions if a.dest == "method")
    tune_solver = next(a for a in commands["tune"]._actions if a.dest == "solver")
    assert list(method.choices) == list(METHODS)
    assert list(tune_solver.choices) == list(LEARNABLE_METHODS)


def test_load_documents_and_accepts_every_prior_name():
    assert available() == sorted(PRIORS)
    for name, entry in PRIORS.items():
        assert f'``"{name}"``' in load.__doc__, name
        assert callable(resolve(entry.target)), name


def _learned_tensors(prior) -> list[torch.Tensor]:
    """A learned prior's weights: a network's parameters or the patch mixture's tensors."""
    if hasattr(prior, "gmm"):
        return list(prior.gmm.tensors().values())
    return list(prior.network.parameters())


@pytest.mark.parametrize("name", [n for n, e in PRIORS.items() if e.learned])
def test_learned_priors_load_onto_the_device_asked_for(name):
    prior = load(name, device="meta")  # a device without data: only placement is checked
    assert {p.device.type for p in _learned_tensors(prior)} == {"meta"}
    assert {p.device.type for p in _learned_tensors(load(name))} == {"cpu"}
    assert isinstance(prior.prox(torch.zeros(1, 1, 8, 8, device="meta"), 0.002), torch.Tensor)
