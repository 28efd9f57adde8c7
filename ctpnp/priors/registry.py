"""Look up priors by name or weights file.

Two tables, one line per prior:

* ``FACTORIES``: priors built from code alone (``name -> callable()``);
* ``FROM_WEIGHTS``: learned priors (``model name -> callable(tensors, card,
  source)``). ``load(name)`` for such a name reads the shipped
  ``ctpnp/priors/weights/<name>.safetensors``; ``load(path)`` reads any weights
  file and dispatches on the ``"model"`` entry of its card.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from ctpnp.priors.base import Prior
from ctpnp.priors.bm3d import BM3DPrior
from ctpnp.priors.lpn import LPNPrior
from ctpnp.priors.prox_denoiser import ProxDenoiserPrior
from ctpnp.priors.tv import TVPrior
from ctpnp.priors.weights import card_path, load_weights

__all__ = [
    "FACTORIES",
    "FROM_WEIGHTS",
    "SHIPPED_WEIGHTS_DIR",
    "available",
    "fingerprint",
    "load",
    "shipped_weights",
]

SHIPPED_WEIGHTS_DIR = Path(__file__).with_name("weights")

FACTORIES: dict[str, Callable[[], Prior]] = {
    "tv": TVPrior,
    "bm3d": BM3DPrior,
}

FROM_WEIGHTS: dict[str, Callable[[dict[str, torch.Tensor], dict, str], Prior]] = {
    "lpn": LPNPrior.from_weights,
    "prox": ProxDenoiserPrior.from_weights,
}


def available() -> list[str]:
    """Names :func:`load` accepts."""
    return sorted({*FACTORIES, *FROM_WEIGHTS})


def shipped_weights(name: str) -> Path:
    """Path of the weights shipped for learned prior ``name``."""
    return SHIPPED_WEIGHTS_DIR / f"{name}.safetensors"


def _weights_path(key: str, name_or_path: str | Path) -> Path:
    return shipped_weights(key) if key in FROM_WEIGHTS else Path(name_or_path)


def fingerprint(name_or_path: str | Path) -> str:
    """What results of prior ``name_or_path`` depend on besides the code.

    ``"code"`` for priors built from code alone; for learned priors the sha256
    of the model card, which holds the weights' sha256 and the PnP parameters
    solvers take by default. Raises ``ValueError`` naming a missing card.
    """
    key = str(name_or_path)
    if key in FACTORIES:
        return "code"
    card = card_path(_weights_path(key, name_or_path))
    if not card.is_file():
        raise ValueError(f"prior {key!r} has no model card {card}")
    return hashlib.sha256(card.read_bytes()).hexdigest()


def load(name_or_path: str | Path) -> Prior:
    """A prior by registry name (see :func:`available`) or from a weights file path.

    Raises ``ValueError`` for unknown names and unreadable, corrupt or
    mismatched weights files (the message names the file).
    """
    key = str(name_or_path)
    if key in FACTORIES:
        return FACTORIES[key]()
    path = _weights_path(key, name_or_path)
    if key not in FROM_WEIGHTS and path.suffix != ".safetensors":
        raise ValueError(f"unknown prior {key!r}: use one of {available()} or a .safetensors path")
    tensors, card = load_weights(path)
    model = card["model"]
    if model not in FROM_WEIGHTS:
        raise ValueError(f"weights file {path} is for model {model!r}, which ctpnp does not know")
    return FROM_WEIGHTS[model](tensors, card, str(path))
