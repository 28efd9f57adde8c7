"""ctpnp: low-dose CT reconstruction with convergent plug-and-play priors.

Images are float32 torch tensors shaped ``(B, 1, H, W)`` holding linear
attenuation ``mu`` in 1/mm; sinograms are ``(B, 1, views, channels)`` post-log
line integrals. See :mod:`ctpnp.geometry` for the coordinate frame.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"
__all__ = ["ScanGeometry", "Tomography", "__version__"]

_LAZY = {"ScanGeometry": "ctpnp.geometry", "Tomography": "ctpnp.projector"}


def __getattr__(name: str):
    """Import the geometry and projector (ODL, ASTRA, torch) on first use, so that
    ``import ctpnp`` and ``ctpnp --help`` stay quick."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctpnp' has no attribute {name!r}")
