"""Priors for plug-and-play CT reconstruction: learned proximal networks, TV, ...

Every prior works on mu images ``(B, 1, H, W)`` float32 in 1/mm and offers
``prox(x, sigma)`` (``sigma``: Gaussian noise std in 1/mm) and ``potential(x)``
(nats); see :class:`ctpnp.priors.base.Prior`. Get one with :func:`load`.
"""

from ctpnp.priors.base import Prior
from ctpnp.priors.lpn import LPN, LPNPrior
from ctpnp.priors.registry import available, load
from ctpnp.priors.tv import TVPrior

__all__ = ["LPN", "LPNPrior", "Prior", "TVPrior", "available", "load"]
