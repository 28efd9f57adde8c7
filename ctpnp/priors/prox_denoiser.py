"""Gradient-step Prox-denoiser (Hurault, Leclaire & Papadakis, ICLR 2022) as a CT prior.

Network level (:class:`GradientStepDenoiser`): ``N_sigma(u) = u - R(u, sigma)``
with ``R`` a small U-Net (:mod:`ctpnp.priors.unet`),

    g_sigma(u) = 1/2 ||u - N_sigma(u)||^2 = 1/2 ||R(u, sigma)||^2,
    D_sigma(u) = u - grad g_sigma(u)            (grad by autograd).

When ``grad g_sigma`` is ``L``-Lipschitz with ``L < 1`` (``||Hess g_sigma|| <
1``, trained for with a spectral-norm penalty, see
:func:`hessian_spectral_norm`), ``D_sigma`` is the proximal operator of a
weakly convex ``phi_sigma`` whose value at the point ``D_sigma(z)`` is known
exactly::

    phi_sigma(D_sigma(z)) = g_sigma(z) - 1/2 ||z - D_sigma(z)||^2.

A network trained by L2 alone can have ``L`` above 1; its *relaxed* form
``D = Id - gamma grad g`` (Hurault, Chambolle, Leclaire & Papadakis, 2023) is
the gradient-step denoiser of the potential ``gamma g``, and so again an exact
prox when ``gamma L < 1``. ``gamma`` (``relaxation``, one value per noise
level, :mod:`ctpnp.priors.relaxation`) is part of the network, read from the
model card, and everything below (prox, potential, map, the Hessian norm) is
that of ``gamma g``.

Units. Images handed to :class:`ProxDenoiserPrior` are mu (1/mm), ``(B, 1, H,
W)``; the network sees normalized intensities ``u = mu / (2 mu_water)``
(:mod:`ctpnp.priors.normalization`) and the noise std in the same unit. As for
the LPN, ``D_sigma = prox_{sigma^2 R}`` of a Gibbs prior ``exp(-R)``, so values
are reported as ``R = phi_sigma / sigma^2`` in **nats** (up to a constant).
"""

from __future__ import annotations

import torch
from torch import nn

from ctpnp.priors.normalization import mu_to_unit, sigma_mu_to_unit, unit_to_mu
from ctpnp.priors.precision import ieee_float32
from ctpnp.priors.relaxation import Relaxation
from ctpnp.priors.unet import SmallUNet, UNetConfig
from ctpnp.priors.weights import check_state_dict

__all__ = ["GradientStepDenoiser", "ProxDenoiserPrior", "hessian_spectral_norm"]


class GradientStepDenoiser(nn.Module):
    """``D_sigma = Id - grad g_sigma`` with ``g_sigma = gamma(sigma)/2 ||R(u, sigma)||^2``.

    Shapes: ``u`` ``(B, 1, H, W)`` normalized intensity; ``sigma`` ``(B,)``
    noise std in normalized intensity. ``relaxation`` gives ``gamma`` in (0, 1]
    per noise level, a :class:`~ctpnp.priors.relaxation.Relaxation` or one
    number for all (1 while training).
    """

    def __init__(self, config: UNetConfig, relaxation: float | Relaxation = 1.0) -> None:
        super().__init__()
        self.residual = SmallUNet(config)
        self.relaxation = (relaxation if isinstance(relaxation, Relaxation)
                           else Relaxation.constant(relaxation))

    @property
    def config(self) -> UNetConfig:
        """The U-Net architecture."""
        return self.residual.config

    def g(self, u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Per-image potential ``g_sigma(u)`` ``(B,)`` (normalized intensity squared)."""
        return 0.5 * self.relaxation(sigma) * self.residual(u, sigma).flatten(1).pow(2).sum(1)

    def grad_g(
        self, u: torch.Tensor, sigma: torch.Tensor, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(grad g_sigma(u), g_sigma(u))``: ``(B, 1, H, W)``, ``(B,)``.

        With ``create_graph`` the gradient stays differentiable (training,
        Hessian-vector products) and ``u`` is used as given (it must require
        grad or be a leaf that can); otherwise both outputs are detached.
        """
        if not create_graph:
            u = u.detach()
        with torch.enable_grad(), ieee_float32():
            if not u.requires_grad:
                u = u.requires_grad_(True)
            g = self.g(u, sigma)
            (grad,) = torch.autograd.grad(g.sum(), u, create_graph=create_graph)
        if not create_graph:
            grad, g = grad.detach(), g.detach()
        return grad, g

    def forward(
        self, u: torch.Tensor, sigma: torch.Tensor, create_graph: bool = False
    ) -> torch.Tensor:
        """``D_sigma(u) = u - grad g_sigma(u)``, ``(B, 1, H, W)``."""
        grad, _ = self.grad_g(u, sigma, create_graph)
        return u - grad


def hessian_spectral_norm(
    network: GradientStepDenoiser,
    u: torch.Tensor,
    sigma: torch.Tensor,
    n_iter: int = 10,
    create_graph: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Power-iteration estimate of ``||Hess g_sigma(u_b)||_2`` for every image: ``(B,)``.

    ``g`` is a sum over the batch, so its Hessian is block diagonal and one
    batched power iteration (Hessian-vector products by double backprop) serves
    all images. ``n_iter`` iterations run without a graph to the parameters;
    with ``create_graph`` the returned estimate ``||H v||`` (unit ``v``) is
    differentiable with respect to the network parameters (the training
    penalty). Power iteration approaches the norm from below.
    """
    x = u.detach().requires_grad_(True)
    with torch.enable_grad():
        grad, _ = network.grad_g(x, sigma, create_graph=True)
        # drawn on the generator's device (the CPU by default), then moved: the same
        # start vector on every device
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        v = v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        for _ in range(n_iter):
            (hv,) = torch.autograd.grad((grad * v).sum(), x, retain_graph=True)
            v = hv / hv.flatten(1).norm(dim=1).clamp(min=1e-12).reshape(-1, 1, 1, 1)
        (hv,) = torch.autograd.grad((grad * v).sum(), x, create_graph=create_graph)
    norm = hv.flatten(1).norm(dim=1)
    return norm if create_graph else norm.detach()


class ProxDenoiserPrior:
    """Whole-image Prox-denoiser prior on mu images ``(B, 1, H, W)`` (1/mm).

    Args:
        network: trained :class:`GradientStepDenoiser`; its weights are frozen
            (``requires_grad`` off) until a trainer unfreezes them.
        sigma_range_unit: ``(min, max)`` noise std (normalized) it was trained on;
            :meth:`prox` clamps ``sigma`` into it.
        sigma_ref_unit: noise level at which :meth:`potential` and
            :meth:`log_prior_map` evaluate ``g_sigma`` and ``phi_sigma``.
        card: the model card it was loaded with (informational).
    """

    def __init__(
        self,
        network: GradientStepDenoiser,
        sigma_range_unit: tuple[float, float],
        sigma_ref_unit: float,
        card: dict | None = None,
    ) -> None:
        self.network = network.eval().requires_grad_(False)  # a trainer unfreezes it
        self.sigma_range_unit = (float(sigma_range_unit[0]), float(sigma_range_unit[1]))
        self.sigma_ref_unit = float(sigma_ref_unit)
        self.card = card or {}

    @classmethod
    def from_weights(
        cls, tensors: dict[str, torch.Tensor], card: dict, source: str, *,
        device: str | torch.device = "cpu",
    ) -> ProxDenoiserPrior:
        """Build from a weights file's tensors and model card (see :mod:`ctpnp.priors.weights`),
        the network on ``device``.

        The card needs ``architecture`` (:meth:`UNetConfig.to_dict`),
        ``sigma_range_unit`` and ``sigma_ref_unit``, and may give ``relaxation``
        (:meth:`Relaxation.from_card`; default 1); anything missing or mismatched
        raises ``ValueError`` naming ``source``.
        """
        try:
            network = GradientStepDenoiser(UNetConfig.from_dict(card["architecture"]),
                                           Relaxation.from_card(card.get("relaxation", 1.0)))
            lo, hi = (float(s) for s in card["sigma_range_unit"])
            ref = float(card["sigma_ref_unit"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"model card of {source} is not a valid Prox-denoiser card: {err!r}"
            ) from None
        check_state_dict(network.state_dict(), tensors, source)
        network.load_state_dict(tensors)
        return cls(network.to(device), (lo, hi), ref, card=card)

    def sigma_unit(self, sigma_mu: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(B,)`` normalized noise std of ``sigma_mu`` (1/mm, float or ``(B,)``) for the
        batch ``like`` ``(B, ...)``, clamped into the trained range."""
        s = torch.as_tensor(sigma_mu_to_unit(sigma_mu), dtype=like.dtype,
                            device=like.device).reshape(-1)
        return s.expand(like.shape[0]).clamp(*self.sigma_range_unit)

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``D_sigma(x)`` on mu images ``(B, 1, H, W)`` (1/mm); ``sigma`` 1/mm, float or ``(B,)``.

        ``sigma`` is clamped into the trained range (``card["sigma_range_hu"]``).
        """
        return self.prox_and_potential(x, sigma)[0]

    def prox_and_potential(
        self, z: torch.Tensor, sigma: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_sigma(z), R(D_sigma(z)))``: mu ``(B, 1, H, W)`` and nats ``(B,)``.

        ``R(D(z)) = phi_sigma(D(z)) / sigma^2`` with ``phi_sigma(D(z)) =
        g_sigma(z) - 1/2 ||z - D(z)||^2`` (normalized units) -- exact, with no
        inversion, because it is evaluated at the prox output. Differentiable
        with respect to ``z``, ``sigma`` and the network's weights when autograd
        is on and any of them requires grad (learning PnP parameters, fine-tuning
        the network through PnP); detached otherwise.
        """
        u = mu_to_unit(z)
        s = self.sigma_unit(sigma, u)
        differentiable = torch.is_grad_enabled() and (
            u.requires_grad or s.requires_grad
            or any(p.requires_grad for p in self.network.parameters()))
        grad, g = self.network.grad_g(u, s, create_graph=differentiable)
        phi = g - 0.5 * grad.flatten(1).pow(2).sum(1)
        return unit_to_mu(u - grad), phi / s**2

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``g_sigma(x) / sigma^2`` at ``sigma_ref_unit``, nats ``(B,)``.

        This is the gradient-step potential (``D = Id - grad g``), the
        objective gradient-step PnP monitors; it grows with noise and artifacts.
        It is *not* ``phi_sigma(x)``: that is known exactly only at prox outputs
        ``x = D(z)``, see :meth:`prox_and_potential`.
        """
        u = mu_to_unit(x)
        return self.network.g(u, self._sigma_unit_ref(u)).detach() / self.sigma_ref_unit**2

    def log_prior_map(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel terms of ``R(D(x)) = phi_sigma(D(x)) / sigma^2`` at ``sigma_ref_unit``.

        ``(B, 1, H, W)`` in nats per pixel: ``(gamma/2 R(x)_i^2 - 1/2 (grad
        g(x))_i^2) / sigma^2``, which sums to the second output of
        :meth:`prox_and_potential` at ``z = x``. Large where the network has to
        remove much (implausible structure).
        """
        u = mu_to_unit(x)
        s = self._sigma_unit_ref(u)
        grad, _ = self.network.grad_g(u, s)
        with torch.no_grad():
            res = self.network.residual(u, s)
        gamma = self.network.relaxation(s).reshape(-1, 1, 1, 1)
        return 0.5 * (gamma * res.pow(2) - grad.pow(2)) / self.sigma_ref_unit**2

    def _sigma_unit_ref(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full((like.shape[0],), self.sigma_ref_unit, dtype=like.dtype,
                          device=like.device)
