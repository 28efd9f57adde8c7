"""Load priors by name or weights file, on a device.

The names are those of :data:`ctpnp.registry.PRIORS`: priors built from code
(``tv``, ``bm3d``) and learned priors (``lpn``, ``prox``, ``gmm``) whose shipped weights
are ``ctpnp/priors/weights/<name>.safetensors``. ``load(path)`` reads any
weights file and dispatches on the ``"model"`` entry of its card.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ctpnp.priors.base import Prior
from ctpnp.priors.weights import card_path, load_weights
from ctpnp.registry import PRIORS, resolve

__all__ = ["SHIPPED_WEIGHTS_DIR", "available", "fingerprint", "load", "shipped_weights"]

SHIPPED_WEIGHTS_DIR = Path(__file__).with_name("weights")


def available() -> list[str]:
    """Names :func:`load` accepts."""
    return sorted(PRIORS)


def shipped_weights(name: str) -> Path:
    """Path of the weights shipped for learned prior ``name``."""
    return SHIPPED_WEIGHTS_DIR / f"{name}.safetensors"


def _weights_path(name_or_path: str | Path) -> Path:
    key = str(name_or_path)
    return shipped_weights(key) if key in PRIORS else Path(name_or_path)


def fingerprint(name_or_path: str | Path) -> str:
    """What results of prior ``name_or_path`` depend on besides the code.

    ``"code"`` for priors built from code alone; for learned priors the sha256
    of the model card, which holds the weights' sha256 and the PnP parameters
    solvers take by default. Raises ``ValueError`` naming a missing card.
    """
    key = str(name_or_path)
    if key in PRIORS and not PRIORS[key].learned:
        return "code"
    card = card_path(_weights_path(name_or_path))
    if not card.is_file():
        raise ValueError(f"prior {key!r} has no model card {card}")
    return hashlib.sha256(card.read_bytes()).hexdigest()


def load(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> Prior:
    """A prior by name or from a ``.safetensors`` weights file, its networks on ``device``.

    Names: ``"lpn"`` (learned proximal network: exact prox, potential,
    log-prior map), ``"prox"`` (gradient-step Prox-denoiser: prox, potential,
    log-prior map), ``"gmm"`` (Gaussian-mixture patch prior: exact prox, potential,
    log-prior map), ``"tv"`` (total variation: prox, potential, log-prior map)
    and ``"bm3d"`` (BM3D: prox only); see :data:`ctpnp.registry.PRIORS`. Priors
    built from code work on the device of the images they get.

    Raises ``ValueError`` for unknown names and unreadable, corrupt or
    mismatched weights files (the message names the file).
    """
    key = str(name_or_path)
    entry = PRIORS.get(key)
    if entry is not None and not entry.learned:
        return resolve(entry.target)()
    path = _weights_path(name_or_path)
    if entry is None and path.suffix != ".safetensors":
        raise ValueError(f"unknown prior {key!r}: use one of {available()} or a .safetensors path")
    tensors, card = load_weights(path)
    model = PRIORS.get(card["model"])
    if model is None or not model.learned:
        raise ValueError(f"weights file {path} is for model {card['model']!r}, which ctpnp "
                         "does not know")
    return resolve(model.target)(tensors, card, str(path), device=torch.device(device))
