"""Where training runs: resolve a device name and describe it for the model card."""

from __future__ import annotations

import torch

__all__ = ["describe_device", "training_device"]


def training_device(name: str | torch.device = "cpu") -> torch.device:
    """``torch.device`` for ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).

    Raises ``ValueError`` with the reason for a name torch does not know, another
    device type, or a CUDA device that this torch build or machine lacks.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"training device must be 'cpu' or 'cuda[:N]', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"training device {str(device)!r} asked for, but torch {torch.__version__} "
            "sees no CUDA GPU; train with device 'cpu'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"training device must be 'cpu' or 'cuda[:N]', got {str(device)!r}")
    return device


def describe_device(device: torch.device) -> dict:
    """JSON-ready description for the model card: type, GPU name or CPU threads, torch."""
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device),
                "torch": torch.__version__}
    return {"type": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__}
