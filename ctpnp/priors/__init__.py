"""Priors for plug-and-play CT reconstruction: learned proximal networks,
the gradient-step Prox-denoiser, the Gaussian-mixture patch prior, TV and BM3D.

Every prior works on mu images ``(B, 1, H, W)`` float32 in 1/mm and offers
``prox(x, sigma)`` (``sigma``: Gaussian noise std in 1/mm); where defined also
``potential(x)`` (nats) and ``log_prior_map(x)`` (see :mod:`ctpnp.priors.base`).
Get one with :func:`load` (``load(name, device=...)``).
"""

from ctpnp.priors.base import HasLogPriorMap, HasPotential, Prior
from ctpnp.priors.bm3d import BM3DPrior
from ctpnp.priors.gmm import GMMPatchPrior
from ctpnp.priors.lpn import LPN, LPNPrior
from ctpnp.priors.prox_denoiser import GradientStepDenoiser, ProxDenoiserPrior
from ctpnp.priors.registry import available, load
from ctpnp.priors.tv import TVPrior

__all__ = [
    "LPN",
    "BM3DPrior",
    "GMMPatchPrior",
    "GradientStepDenoiser",
    "HasLogPriorMap",
    "HasPotential",
    "LPNPrior",
    "Prior",
    "ProxDenoiserPrior",
    "TVPrior",
    "available",
    "load",
]
