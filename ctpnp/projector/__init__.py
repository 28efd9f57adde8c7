"""The CT forward model: ODL ray transforms on ASTRA as torch operators."""

from ctpnp.projector.backend import cuda_available
from ctpnp.projector.tomography import Tomography

__all__ = ["Tomography", "cuda_available"]
