"""Learned proximal network (LPN; Fang, Buchanan & Sulam, ICLR 2024) as a CT prior.

Patch level (:class:`LPN`): ``psi(x) = ICNN(x) + alpha/2 ||x||^2`` is convex
(strongly, with modulus ``alpha``) and ``f = grad psi`` is the proximal
operator of a regularizer ``phi`` (Gribonval & Nikolova): ``f = prox_phi``.

Image level (:class:`LPNPrior`): with the uniform-coverage tiling of
:mod:`ctpnp.priors.patches`, ``Phi(u) = sum_k psi(patch_k(u)) / coverage`` is
convex and ``F = grad Phi`` is the exact proximal operator of the image
regularizer ``phi_img(u) = <y, u> - 1/2 ||u||^2 - Phi(y)`` where ``grad Phi(y)
= u`` (``phi_img = Phi^* - 1/2 ||.||^2`` on the range of ``F``). ``y`` is found
by L-BFGS on the strongly convex ``Phi(y) - <u, y>`` started at ``y = u``; the
residual ``||F(y) - u||`` (RMS per pixel) is reported.

Units. Images handed to the prior are mu (1/mm), ``(B, 1, H, W)`` float32; the
network sees normalized intensities ``u = mu / (2 mu_water)``
(:mod:`ctpnp.priors.normalization`). It was trained to denoise Gaussian noise
of std ``sigma_train`` (normalized units), so at that level ``F = prox_{sigma^2
R}`` of the Gibbs prior ``p(u) ~ exp(-R(u))`` with ``R = phi_img /
sigma_train^2``. :meth:`LPNPrior.potential` and :meth:`LPNPrior.log_prior_map`
report ``R`` in **nats** (up to an additive constant): larger = less
plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ctpnp.priors.icnn import ICNNConfig, PatchICNN
from ctpnp.priors.normalization import mu_to_unit, sigma_mu_to_unit, unit_to_mu
from ctpnp.priors.patches import PatchTiling
from ctpnp.priors.precision import ieee_float32
from ctpnp.priors.weights import check_state_dict

__all__ = ["LPN", "InversionResult", "LPNPrior"]

_CHUNK_PATCHES = 512  # patches per autograd call when processing whole images


class LPN(nn.Module):
    """Patch prox ``f = grad psi`` with ``psi = ICNN + alpha/2 ||.||^2``.

    Args:
        config: ICNN architecture.
        alpha: strong-convexity weight ``alpha > 0``.
    """

    def __init__(self, config: ICNNConfig, alpha: float = 1e-6) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.icnn = PatchICNN(config)
        self.alpha = alpha

    @property
    def config(self) -> ICNNConfig:
        """The ICNN architecture."""
        return self.icnn.config

    def architecture(self) -> dict:
        """JSON-ready hyper-parameters (inverse of :meth:`from_architecture`)."""
        return {"icnn": self.config.to_dict(), "alpha": self.alpha}

    @classmethod
    def from_architecture(cls, arch: dict) -> LPN:
        """Build an untrained network from :meth:`architecture` output."""
        return cls(ICNNConfig.from_dict(arch["icnn"]), float(arch["alpha"]))

    def clamp_weights(self) -> None:
        """Keep the convex path non-negative (call after every optimizer step)."""
        self.icnn.clamp_weights()

    def psi(self, x: torch.Tensor) -> torch.Tensor:
        """Convex potential of patches ``(N, 1, p, p)`` -> ``(N,)``."""
        return self.icnn(x) + 0.5 * self.alpha * x.flatten(1).pow(2).sum(1)

    def forward(self, x: torch.Tensor, create_graph: bool | None = None) -> torch.Tensor:
        """``f(x) = grad psi(x)`` for patches ``(N, 1, p, p)`` -> ``(N, 1, p, p)``.

        ``create_graph`` (default: ``x.requires_grad`` or training mode) keeps
        the graph so that ``f(x)`` can itself be differentiated.
        """
        if create_graph is None:
            create_graph = x.requires_grad or self.training
        if not create_graph:
            x = x.detach()
        with torch.enable_grad(), ieee_float32():
            if not x.requires_grad:
                x = x.requires_grad_(True)
            (grad,) = torch.autograd.grad(self.psi(x).sum(), x, create_graph=create_graph)
        return grad


@dataclass(frozen=True)
class InversionResult:
    """Outcome of inverting the image prox: ``F(y) ~= u``.

    Attributes:
        y: ``(B, 1, H, W)`` normalized-intensity pre-image.
        residual: ``(B,)`` root-mean-square ``F(y) - u`` per pixel, in
            normalized intensity (1 = 2000 HU), per image (per patch when the
            inversion ran on patches).
        iterations: L-BFGS iterations used.
    """

    y: torch.Tensor
    residual: torch.Tensor
    iterations: int


class LPNPrior:
    """Whole-image LPN prior on mu images: exact prox, regularizer value and its map.

    Args:
        network: trained :class:`LPN` (its ``patch_size`` sets the tiling).
        sigma_train_unit: noise std (normalized intensity) the network was trained for.
        stride: patch stride of the tiling (``patch_size % stride == 0``).
        card: the model card it was loaded with (informational).
    """

    def __init__(
        self,
        network: LPN,
        sigma_train_unit: float,
        stride: int | None = None,
        card: dict | None = None,
    ) -> None:
        self.network = network.eval()
        p = network.config.patch_size
        self.tiling = PatchTiling(p, stride or max(p // 2, 1), pad_value=0.0)
        self.sigma_train_unit = float(sigma_train_unit)
        self.card = card or {}
        self.last_inversion: InversionResult | None = None

    @classmethod
    def from_weights(cls, tensors: dict[str, torch.Tensor], card: dict, source: str, *,
                     device: str | torch.device = "cpu") -> LPNPrior:
        """Build from a weights file's tensors and model card (see :mod:`ctpnp.priors.weights`),
        the network on ``device``.

        The card needs ``architecture`` (:meth:`LPN.architecture` plus ``stride``)
        and ``sigma_train_unit``; anything missing or mismatched raises ``ValueError``.
        """
        try:
            arch = card["architecture"]
            network = LPN.from_architecture(arch)
            stride, sigma = arch.get("stride"), float(card["sigma_train_unit"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"model card of {source} is not a valid LPN card: {err!r}") from None
        check_state_dict(network.state_dict(), tensors, source)
        network.load_state_dict(tensors)
        return cls(network.to(device), sigma, stride=stride, card=card)

    # ----- normalized-intensity domain -------------------------------------------------
    def image_potential(self, u: torch.Tensor) -> torch.Tensor:
        """``Phi(u) = sum_k psi(patch_k(u)) / coverage`` for ``(B, 1, H, W)`` -> ``(B,)``."""
        b = u.shape[0]
        psi = self.network.psi(self.tiling.extract(u))
        return psi.reshape(b, -1).sum(1) / self.tiling.coverage

    def image_prox(self, u: torch.Tensor) -> torch.Tensor:
        """``F(u) = grad Phi(u)`` on normalized images ``(B, 1, H, W)`` (exact prox).

        Differentiable with respect to ``u`` when ``u.requires_grad``.
        """
        b, _, h, w = u.shape
        patches = self.tiling.extract(u)
        grads = [self.network(c) for c in patches.split(_CHUNK_PATCHES)]
        return self.tiling.adjoint_mean(torch.cat(grads), b, h, w)

    def invert(
        self, u: torch.Tensor, max_iter: int = 200, tol: float = 1e-4
    ) -> InversionResult:
        """Find ``y`` with ``F(y) = u`` by L-BFGS on ``Phi(y) - <u, y>`` from ``y = u``.

        Args:
            u: ``(B, 1, H, W)`` normalized images (treated as a batch of
                independent problems; the objective is separable).
            max_iter: L-BFGS iteration cap.
            tol: stop when the gradient ``F(y) - u`` has max-abs below ``tol * max|u|``.
        """
        return _conjugate_point(self.image_potential, self.image_prox, u, max_iter, tol)

    def regularizer(self, u: torch.Tensor, max_iter: int = 200, tol: float = 1e-4) -> torch.Tensor:
        """``phi_img(u)`` (normalized intensity squared, up to a constant) ``(B,)``.

        Records the inversion in :attr:`last_inversion`.
        """
        inv = self.invert(u, max_iter, tol)
        self.last_inversion = inv
        with torch.no_grad():
            phi = (inv.y * u).flatten(1).sum(1) - 0.5 * u.flatten(1).pow(2).sum(1)
            return phi - self.image_potential(inv.y)

    # ----- mu domain (public prior interface) ------------------------------------------
    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise mu images ``(B, 1, H, W)`` (1/mm) at noise std ``sigma`` (1/mm).

        At ``sigma`` equal to the training level (``sigma_train_unit`` times
        ``2 mu_water``) this is the exact prox ``F = prox_{sigma^2 R}``. Below it,
        the relaxation ``(1 - t) x + t F(x)`` with ``t = sigma / sigma_train`` --
        the gradient of the convex ``(1 - t)/2 ||x||^2 + t Phi``, hence still an
        exact proximal operator (of a regularizer ~ ``t R`` to first order). The
        linear ``t`` follows the empirical strength scaling ``lambda ~ sigma`` of
        MAP denoisers (the validation-tuned TV strength is ``~1.6 sigma`` from 25
        to 200 HU) and denoised held-out phantoms better than ``t = (sigma /
        sigma_train)^2``. Above the training level ``t`` is capped at 1 (the
        trained prox itself). ``sigma`` may be a float or a ``(B,)`` tensor.
        """
        t = _relaxation(sigma_mu_to_unit(sigma), self.sigma_train_unit, x)
        denoised = unit_to_mu(self.image_prox(mu_to_unit(x)))
        return (1.0 - t) * x + t * denoised

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x) = phi_img(u) / sigma_train^2`` in nats (up to a constant): ``(B,)``."""
        return self.regularizer(mu_to_unit(x)) / self.sigma_train_unit**2

    def log_prior_map(self, x: torch.Tensor, max_iter: int = 200) -> torch.Tensor:
        """Per-pixel implausibility map ``(B, 1, H, W)`` in nats per pixel.

        Construction: for every patch ``x_k`` of the tiling, the patch
        regularizer ``phi(x_k) = <y_k, x_k> - 1/2 ||x_k||^2 - psi(y_k)`` with
        ``f(y_k) = x_k`` (a batched, separable L-BFGS inversion), divided by
        ``sigma_train^2`` (nats) and by the ``p^2`` pixels of the patch; each
        pixel gets the mean over the ``coverage`` patches that contain it. The
        map therefore sums to ``sum_k phi(x_k) / (coverage sigma_train^2)``, an
        EPLL-style patch regularizer (close to, not identical with,
        :meth:`potential`). Larger = less plausible. The inversion is recorded in
        :attr:`last_inversion` (its ``y`` holds the patch pre-images).
        """
        u = mu_to_unit(x)
        b, _, h, w = u.shape
        patches = self.tiling.extract(u)
        inv = _conjugate_point(self.network.psi, self.network, patches, max_iter, 1e-4)
        self.last_inversion = inv
        with torch.no_grad():
            phi = (inv.y * patches).flatten(1).sum(1) - 0.5 * patches.flatten(1).pow(2).sum(1)
            phi = phi - self.network.psi(inv.y)
            per_pixel = phi / (self.sigma_train_unit**2 * self.tiling.patch_size**2)
            return self.tiling.patch_map(per_pixel, b, h, w)


def _relaxation(
    sigma_unit: float | torch.Tensor, sigma_train_unit: float, like: torch.Tensor
) -> torch.Tensor:
    """``t = min(1, sigma / sigma_train)`` shaped ``(B, 1, 1, 1)`` (or scalar)."""
    t = torch.as_tensor(sigma_unit, dtype=like.dtype, device=like.device) / sigma_train_unit
    t = t.clamp(max=1.0)
    return t.reshape(-1, 1, 1, 1) if t.ndim else t


def _conjugate_point(potential, gradient, u: torch.Tensor, max_iter: int, tol: float):
    """Minimize ``sum potential(y) - <u, y>`` by L-BFGS from ``y = u``.

    ``potential`` maps a batch to per-item values, ``gradient`` is its gradient
    (used only for the final residual); see :class:`InversionResult`.
    """
    y = u.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    target = u.detach()
    scale = target.abs().max().clamp(min=1e-12)
    opt = torch.optim.LBFGS(
        [y],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=float(tol * scale),
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            obj = potential(y).sum() - (target * y).sum()
            obj.backward()
        return obj

    opt.step(closure)
    iterations = int(opt.state[y].get("n_iter", 0))
    y = y.detach()
    with torch.no_grad():
        res = (gradient(y) - target).flatten(1).pow(2).mean(dim=1).sqrt()
    return InversionResult(y=y, residual=res, iterations=iterations)
