"""BM3D (Dabov et al., 2007; Mäkinen et al., 2020) as a plug-and-play denoiser (``bm3d`` package).

BM3D is a denoiser, not the proximal operator of a known regularizer: it has
:meth:`BM3DPrior.prox` but no potential. It runs on normalized intensities ``u
= mu / (2 mu_water)`` (:mod:`ctpnp.priors.normalization`) with the white-noise
std ``sigma_psd`` in the same unit, one slice at a time on the CPU (numpy).
"""

from __future__ import annotations

import numpy as np
import torch

from ctpnp.priors.normalization import mu_to_unit, sigma_mu_to_unit, unit_to_mu

__all__ = ["BM3DPrior"]


class BM3DPrior:
    """BM3D denoiser on mu images ``(B, 1, H, W)`` (1/mm).

    Args:
        profile: ``bm3d`` profile name (``"np"`` normal, ``"refilter"``, ``"vn"``,
            ``"high"``, ...).
    """

    def __init__(self, profile: str = "np") -> None:
        self.profile = profile

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` for Gaussian noise of std ``sigma`` (1/mm, float or ``(B,)``).

        Returns a tensor like ``x`` (not differentiable).
        """
        import bm3d  # deferred: optional heavy dependency, only needed here

        b = x.shape[0]
        sigma_unit = torch.as_tensor(sigma_mu_to_unit(sigma), dtype=torch.float64).reshape(-1)
        sigma_unit = sigma_unit.expand(b)
        u = mu_to_unit(x.detach()).cpu().double().numpy()
        out = np.stack([
            bm3d.bm3d(u[i, 0], sigma_psd=float(sigma_unit[i]), profile=self.profile)
            for i in range(b)
        ])[:, None]
        return unit_to_mu(torch.from_numpy(out).to(dtype=x.dtype, device=x.device))
