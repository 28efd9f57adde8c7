"""Training checkpoints without pickle: tensors in safetensors, the rest in JSON.

Beside ``<stem>.safetensors`` (the final weights) a run keeps
``<stem>.ckpt.safetensors`` with the model parameters (``model.*``), the Adam
state (``optim.<param index>.<name>``), the RNG state (``rng``) and any extra
tensors the trainer keeps (``extra.<name>``, e.g. the best weights so far), and
``<stem>.ckpt.json`` with the run's config, step, elapsed time, history and the
optimizer's hyper-parameters. Files are written to a temporary name and renamed,
so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ctpnp.priors.weights import check_state_dict, load_weights

__all__ = ["Checkpoint", "load_initial_weights"]


def load_initial_weights(network: torch.nn.Module, path: str | Path) -> dict:
    """Start ``network`` from the weights file ``path`` (same architecture, checked).

    Returns:
        the record a model card keeps of where a run started: the file's name, its
        card's sha256 of the weights and its card's training record (data, steps,
        time, device).
    """
    tensors, card = load_weights(path)
    check_state_dict(network.state_dict(), tensors, path)
    network.load_state_dict(tensors)
    return {"weights": Path(path).name, "sha256": card.get("sha256"),
            **card.get("training", {})}


class Checkpoint:
    """The checkpoint pair that belongs to final weights at ``out_path``."""

    def __init__(self, out_path: str | Path) -> None:
        out_path = Path(out_path)
        self.weights_path = out_path.with_suffix(".ckpt.safetensors")
        self.state_path = out_path.with_suffix(".ckpt.json")

    def exists(self) -> bool:
        """Both files are present."""
        return self.weights_path.is_file() and self.state_path.is_file()

    def save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        config: dict,
        state: dict,
        extra: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write model, optimizer, RNG, ``extra`` tensors and ``state`` (JSON-ready)."""
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
        opt = optimizer.state_dict()
        for idx, slots in opt["state"].items():
            for name, value in slots.items():
                tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value)
        tensors["rng"] = generator.get_state()
        self.weights_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.weights_path.with_suffix(".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, self.weights_path)
        meta = {"config": config, "param_groups": opt["param_groups"], **state}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.state_path)

    def load(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        config: dict,
    ) -> dict:
        """Restore into ``model``/``optimizer``/``generator``; return the saved state.

        Raises ``ValueError`` if the checkpoint was written for a different config.
        """
        meta = json.loads(self.state_path.read_text())
        if meta["config"] != config:
            raise ValueError(
                f"checkpoint {self.state_path} belongs to a different training config; "
                "delete it or train with resume=False"
            )
        tensors = load_file(str(self.weights_path))
        model.load_state_dict(
            {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        )
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                slots.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
        generator.set_state(tensors["rng"])
        return {k: meta[k] for k in ("step", "elapsed_s", "history")}

    def load_extra(self) -> dict[str, torch.Tensor]:
        """The ``extra`` tensors of the last :meth:`save` (empty when there were none)."""
        tensors = load_file(str(self.weights_path))
        return {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
