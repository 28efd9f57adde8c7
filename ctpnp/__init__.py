"""ctpnp: low-dose CT reconstruction with convergent plug-and-play priors.

Images are float32 torch tensors shaped ``(B, 1, H, W)`` holding linear
attenuation ``mu`` in 1/mm; sinograms are ``(B, 1, views, channels)`` post-log
line integrals. See :mod:`ctpnp.scanner.geometry` for the coordinate frame.

The library: :mod:`~ctpnp.scanner`, :mod:`~ctpnp.io`, :mod:`~ctpnp.data`,
:mod:`~ctpnp.projector`, :mod:`~ctpnp.physics`, :mod:`~ctpnp.phantoms`,
:mod:`~ctpnp.simulation`, :mod:`~ctpnp.priors`, :mod:`~ctpnp.solvers`,
:mod:`~ctpnp.quality`, :mod:`~ctpnp.evaluation`, :mod:`~ctpnp.train`,
:mod:`~ctpnp.registry`; the
applications: :mod:`~ctpnp.apps`, :mod:`~ctpnp.figures`, :mod:`~ctpnp.cli`.
Each is imported on first use (``import ctpnp`` loads none of them, nor torch).
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

SUBPACKAGES = ("apps", "atomic", "cli", "data", "evaluation", "figures", "io", "linalg",
               "phantoms", "physics", "priors", "projector", "quality", "registry", "scanner",
               "simulation", "solvers", "train", "versions")
"""The modules and subpackages ``ctpnp.<name>`` resolves to after ``import ctpnp``."""

_LAZY = {"ScanGeometry": "ctpnp.scanner.geometry", "Tomography": "ctpnp.projector"}

__all__ = ["ScanGeometry", "Tomography", "__version__"]


def __getattr__(name: str):
    """Import a subpackage, the geometry or the projector (ODL, ASTRA, torch) on first use,
    so that ``import ctpnp`` and ``ctpnp --help`` stay quick."""
    if name in SUBPACKAGES:
        return import_module(f"ctpnp.{name}")
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctpnp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *SUBPACKAGES})
