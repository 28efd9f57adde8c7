"""Weights files: a safetensors file of tensors plus a JSON model card beside it.

``NAME.safetensors`` holds only tensors (no pickle, no code); ``NAME.json`` is
the model card: ``{"format": "ctpnp-weights/1", "model": <registry name>,
"sha256": <hex digest of the safetensors file>, ...}`` plus whatever the model
needs (architecture hyper-parameters, normalization, training record).
Loading reads local files only; any problem raises ``ValueError`` naming the
file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ctpnp.atomic import staged_file

__all__ = ["FORMAT", "card_path", "check_state_dict", "load_weights", "save_weights"]

FORMAT = "ctpnp-weights/1"


def card_path(weights_path: str | Path) -> Path:
    """The model card that belongs to ``weights_path`` (same stem, ``.json``)."""
    return Path(weights_path).with_suffix(".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], card: dict) -> Path:
    """Write ``tensors`` to ``path`` (safetensors) and ``card`` (+ format, sha256) beside it.

    ``card`` must contain ``"model"``. Returns the weights path. Both files are
    written beside their final names and moved there when complete; the card
    is moved last, so a crash never leaves a card that vouches for other weights.
    """
    path = Path(path)
    if "model" not in card:
        raise ValueError("model card needs a 'model' entry (the registry name)")
    with staged_file(path) as partial:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(partial))
        digest = _sha256(partial)
    full = {"format": FORMAT, **card, "sha256": digest}
    with staged_file(card_path(path)) as partial:
        partial.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``(tensors, card)`` from ``path`` and its card, verifying format and checksum."""
    path = Path(path)
    cpath = card_path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    if not cpath.is_file():
        raise ValueError(f"weights file {path} has no model card {cpath.name} beside it")
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"model card {cpath} is not valid JSON: {err}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ValueError(f"model card {cpath} is not a {FORMAT} card")
    for key in ("model", "sha256"):
        if key not in card:
            raise ValueError(f"model card {cpath} lacks the '{key}' entry")
    if _sha256(path) != card["sha256"]:
        raise ValueError(
            f"weights file {path} does not match its model card {cpath.name} "
            "(sha256 differs: corrupt or replaced file)"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"weights file {path} is not a valid safetensors file: {err}") from None
    return tensors, card


def check_state_dict(
    expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], source: str | Path
) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``tensors`` has exactly ``expected``'s
    names and shapes."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(
            f"weights file {source} does not fit the architecture in its card: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise ValueError(
                f"weights file {source}: tensor '{name}' has shape {tuple(tensors[name].shape)}, "
                f"the architecture in its card needs {tuple(ref.shape)}"
            )
