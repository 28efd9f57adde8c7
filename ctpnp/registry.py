"""The one registry of reconstruction methods and priors, importable without torch.

Every place that offers a choice of method or prior (the command line, the
volume runner, the study, the PnP-parameter trainer, ``priors.load``) reads
these tables; names are spelled one way (``"pnp-admm"``). An entry names its
implementation as ``"module:attribute"``, imported only by :func:`resolve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_PRIOR",
    "LEARNABLE_METHODS",
    "METHODS",
    "PNP_METHODS",
    "PRIORS",
    "Method",
    "PriorEntry",
    "resolve",
    "solver",
]


@dataclass(frozen=True)
class Method:
    """A reconstruction method.

    Attributes:
        target: its function, ``"module:attribute"`` (for ``fbp`` the method
            ``Tomography.fbp``, called on the operator: ``op.fbp(y)``).
        summary: one line for help texts.
        uses_prior: a PnP method (takes a prior).
        learnable: its dose rule can be learned by restarted JFB (``ctpnp tune``).
    """

    target: str
    summary: str
    uses_prior: bool = False
    learnable: bool = False


@dataclass(frozen=True)
class PriorEntry:
    """A prior ``ctpnp.priors.load`` knows by name.

    Attributes:
        target: built from code: its class (``target()``); learned: its
            ``from_weights(tensors, card, source, device=)`` (model name = prior name).
        summary: one line for help texts and ``load``'s documentation.
        learned: loaded from the weights shipped as ``ctpnp/priors/weights/<name>.safetensors``.
    """

    target: str
    summary: str
    learned: bool = False


METHODS: dict[str, Method] = {
    "pnp-admm": Method("ctpnp.solvers:pnp_admm", "PnP-ADMM (CG data step, prox of the prior)",
                       uses_prior=True, learnable=True),
    "pnp-drs": Method("ctpnp.solvers:pnp_drs", "PnP Douglas-Rachford splitting",
                      uses_prior=True, learnable=True),
    "pnp-pgd": Method("ctpnp.solvers:pnp_pgd", "PnP proximal gradient descent",
                      uses_prior=True),
    "tv": Method("ctpnp.solvers:tv", "total variation by PDHG (baseline)"),
    "fbp": Method("ctpnp.projector:Tomography.fbp", "filtered back-projection"),
}
"""Every method a volume can be reconstructed with, by name."""

PNP_METHODS = tuple(name for name, method in METHODS.items() if method.uses_prior)
"""The PnP methods (take a prior)."""

LEARNABLE_METHODS = tuple(name for name, method in METHODS.items() if method.learnable)
"""Methods whose dose rule ``ctpnp tune`` learns (splitting methods with a CG data step)."""

PRIORS: dict[str, PriorEntry] = {
    "lpn": PriorEntry("ctpnp.priors.lpn:LPNPrior.from_weights",
                      "learned proximal network (exact prox, potential, log-prior map)",
                      learned=True),
    "prox": PriorEntry("ctpnp.priors.prox_denoiser:ProxDenoiserPrior.from_weights",
                       "gradient-step Prox-denoiser (prox, potential, log-prior map)",
                       learned=True),
    "gmm": PriorEntry("ctpnp.priors.gmm:GMMPatchPrior.from_weights",
                      "Gaussian-mixture patch prior (exact prox, potential, log-prior map)",
                      learned=True),
    "tv": PriorEntry("ctpnp.priors.tv:TVPrior",
                     "total variation (prox by FGP, potential, log-prior map)"),
    "bm3d": PriorEntry("ctpnp.priors.bm3d:BM3DPrior", "BM3D denoiser (prox only)"),
}
"""Every prior ``ctpnp.priors.load`` accepts by name."""

DEFAULT_METHOD = "pnp-admm"
"""Method of ``ctpnp reconstruct`` when none is given."""

DEFAULT_PRIOR = "gmm"
"""Prior of the PnP methods when none is given."""


def resolve(target: str) -> Callable:
    """The object ``"module:attribute.attribute"`` names (imports the module)."""
    module, _, path = target.partition(":")
    value = import_module(module)
    for name in path.split("."):
        value = getattr(value, name)
    return value


def solver(method: str) -> Callable:
    """The function of ``method`` (see :data:`METHODS`); ``ValueError`` for unknown names."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown: expected one of {list(METHODS)}")
    return resolve(METHODS[method].target)
