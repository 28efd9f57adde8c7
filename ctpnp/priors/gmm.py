"""Gaussian-mixture patch prior: the exact MMSE patch denoiser, averaged, is an exact prox.

Model. Patches ``x`` of ``p x p`` pixels (``d = p^2``, normalized intensity ``u
= mu / (2 mu_water)``, :mod:`ctpnp.priors.normalization`) follow a mixture of
``K`` Gaussians. Each covariance is kept in low-rank-plus-isotropic form
(``r`` leading eigenvectors ``U_k`` with variances ``lambda_k``, variance
``c_k`` in every other direction), so one denoising step costs ``O(d r K)`` per
patch instead of ``O(d^2 K)``.

Denoiser. With noise of std ``sigma`` the noisy patches follow the same
mixture with ``sigma^2`` added to every variance, ``p_sigma``, and the MMSE
(Tweedie) denoiser of a patch is ``y + sigma^2 grad log p_sigma(y)``. The image
denoiser averages it over all patches of a circular grid with stride ``s``
(every pixel lies in exactly ``(p / s)^2`` patches; the image is first padded
with air to a multiple of ``s``)::

    D_sigma(y) = y - grad g_sigma(y),  g_sigma(y) = -sigma^2 / c  sum_i log p_sigma(P_i y),

with ``c = (p / s)^2``. ``1/2 ||y||^2 - g_sigma(y)`` is convex (its Hessian is
the average of the patch posterior covariances over ``sigma^2``, positive
semi-definite by Tweedie's second-order identity), so ``D_sigma = grad`` of a
convex function: the proximal operator of a (possibly nonconvex) ``phi_sigma``
(Gribonval & Nikolova, 2020), by construction, with no relaxation. Its value at
a prox output is known exactly, as for any gradient-step denoiser::

    phi_sigma(D_sigma(z)) = g_sigma(z) - 1/2 ||z - D_sigma(z)||^2,

reported, like the other priors, as ``R = phi_sigma / sigma^2`` in nats (up to a
constant). ``-log p_sigma`` of each patch is also a direct patch likelihood: the
log-prior map spreads it over the patch's pixels. Every patch term is counted
from the mixture's peak-density bound, ``-log p_sigma(y) + log sum_k pi_k
N(mu_k; mu_k, Sigma_k + sigma^2 I) >= 0`` (:func:`patch_peak_nll`), so a patch
term reads "nats less plausible than the best a patch could be" and the map is
mostly positive, its log meaningful.

Every operation is a closed-form torch expression, differentiable in the
image and in ``sigma`` (learning PnP parameters by JFB), on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctpnp.priors.normalization import mu_to_unit, sigma_mu_to_unit, unit_to_mu
from ctpnp.priors.weights import check_state_dict

__all__ = ["GMMPatchPrior", "PatchGMM", "patch_grid", "patch_log_joint", "patch_peak_nll",
           "patch_posterior"]

_CHUNK_PATCHES_CPU = 512
"""Patches per block on the CPU: the block's ``(n, K, r)`` work arrays (5 MB at K=160,
r=16) stay in cache, 27 % faster than blocks of 4096 at 512² (2026-12-03)."""
_CHUNK_PATCHES_ACCELERATOR = 8192  # fewer, larger kernels on a GPU
_NEGLIGIBLE_NATS = 60.0  # a component this far below a patch's best has weight < 1e-26


@dataclass
class PatchGMM:
    """A Gaussian mixture on flattened ``p x p`` patches (normalized intensity).

    Shapes (``K`` components, ``d = p^2``, rank ``r``): ``means (K, d)``,
    ``basis (K, d, r)`` orthonormal columns, ``variances (K, r)`` along them and
    ``residual_variance (K,)`` in the orthogonal complement (unit^2),
    ``log_weights (K,)`` (log mixture weights, summing to 1).
    """

    means: torch.Tensor
    basis: torch.Tensor
    variances: torch.Tensor
    residual_variance: torch.Tensor
    log_weights: torch.Tensor

    TENSORS = ("means", "basis", "variances", "residual_variance", "log_weights")

    @property
    def patch_size(self) -> int:
        """Patch side ``p`` (pixels)."""
        return math.isqrt(self.means.shape[1])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors by name (what a weights file holds)."""
        return {name: getattr(self, name) for name in self.TENSORS}

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> PatchGMM:
        """A copy on ``device`` in ``dtype``."""
        return PatchGMM(**{k: v.to(device=device, dtype=dtype) for k, v in self.tensors().items()})

    @classmethod
    def from_covariances(cls, means: torch.Tensor, covariances: torch.Tensor,
                         log_weights: torch.Tensor, rank: int) -> PatchGMM:
        """Keep the ``rank`` leading eigenvectors of each ``(K, d, d)`` covariance; the
        rest of its spectrum becomes one variance, the mean of the dropped eigenvalues."""
        eigenvalues, eigenvectors = torch.linalg.eigh(covariances)  # ascending
        d = means.shape[1]
        if not 0 < rank <= d:
            raise ValueError(f"rank must be in 1..{d}, got {rank}")
        kept = eigenvalues[:, d - rank:]
        residual = (eigenvalues[:, : d - rank].mean(1) if rank < d
                    else eigenvalues[:, 0])  # unused when nothing is dropped
        return cls(means, eigenvectors[:, :, d - rank:].contiguous(), kept, residual, log_weights)


def patch_log_joint(gmm: PatchGMM, y: torch.Tensor, noise_var: torch.Tensor | float
                    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``log pi_k + log N(y; mu_k, Sigma_k + sigma^2 I)`` for patches ``y`` ``(n, d)``: ``(n, K)``
    nats, and the terms :func:`patch_posterior` reuses (whitened projections ``t (n, K,
    r)``, noisy residual variances ``(K,)``, the noise variance, the whitened bases side
    by side ``(d, K r)``).

    ``noise_var``: ``sigma^2`` (unit^2), a float or a scalar tensor. With ``lambda`` and
    ``c`` the noisy variances along ``U_k`` and across it, the Mahalanobis distance is
    ``||y - mu_k||^2 / c - sum_j t_j^2`` with ``t = a * U_k^T (y - mu_k)``, ``a^2 = 1/c -
    1/lambda`` (``lambda >= c``: the kept directions are the leading ones), so every
    component's projection comes out of one matrix product ``(n, d) @ (d, K r)`` with
    its mean subtracted in the same call.
    """
    k, d, rank = gmm.basis.shape
    s2 = torch.as_tensor(noise_var, dtype=y.dtype, device=y.device)
    lam, res, log_det = _noisy_spectrum(gmm, s2)
    a = (1 / res[:, None] - 1 / lam).clamp(min=0).sqrt()  # (K, r)
    whitened = (gmm.basis * a[:, None, :]).permute(1, 0, 2).reshape(d, k * rank)
    offsets = torch.einsum("kd,kdr->kr", gmm.means, gmm.basis) * a  # (K, r)
    t = torch.addmm(offsets.reshape(1, -1), y, whitened, beta=-1)  # (n, K r)
    e2 = torch.addmm((gmm.means * gmm.means).sum(1)[None], y, gmm.means.T, alpha=-2)
    e2 += (y * y).sum(1, keepdim=True)  # (n, K): ||y - mu_k||^2
    t = t.reshape(-1, k, rank)
    mahalanobis = e2 / res - torch.linalg.vector_norm(t, dim=2).square()
    log_joint = (gmm.log_weights - 0.5 * (mahalanobis + log_det)
                 - 0.5 * d * math.log(2 * math.pi))
    return log_joint, (t, res, s2, whitened)


def patch_posterior(gmm: PatchGMM, y: torch.Tensor, noise_var: torch.Tensor | float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """MMSE denoised patches and ``-log p_sigma`` of noisy patches ``y`` ``(n, d)``.

    ``noise_var``: ``sigma^2`` (unit^2), a float or a scalar tensor. Returns
    ``(posterior mean (n, d), negative log density (n,) in nats)``.
    """
    log_joint, (t, res, s2, whitened) = patch_log_joint(gmm, y, noise_var)
    k, _, rank = gmm.basis.shape
    w, log_p = _responsibilities(log_joint)
    # grad(-log p_sigma)(y) = sum_k w_k (Sigma_k + sigma^2 I)^-1 (y - mu_k)
    #                       = sum_k w_k [(y - mu_k) / c_k - U_k a_k t_k]
    b = w / res  # (n, K)
    along = (w[..., None] * t).reshape(-1, k * rank)
    score = b.sum(1, keepdim=True) * y - b @ gmm.means - along @ whitened.T
    return y - s2 * score, -log_p


def _responsibilities(log_joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior component weights ``(n, K)`` and ``log p_sigma`` ``(n,)`` (nats) of
    ``log_joint`` ``(n, K)``.

    Components more than :data:`_NEGLIGIBLE_NATS` below a patch's best get weight exactly
    zero (below 1e-26 of it, far under float32's resolution of the sum): their
    exponentials would otherwise be subnormal numbers, on which CPUs compute tens of
    times slower, in every product that follows.
    """
    shifted = log_joint - log_joint.detach().amax(1, keepdim=True)
    kept = shifted > -_NEGLIGIBLE_NATS
    weights = shifted.clamp(min=-_NEGLIGIBLE_NATS).exp() * kept
    total = weights.sum(1, keepdim=True)
    return weights / total, (log_joint - shifted)[:, 0] + total[:, 0].log()


def patch_peak_nll(gmm: PatchGMM, noise_var: torch.Tensor | float) -> torch.Tensor:
    """``-log sum_k pi_k N(mu_k; mu_k, Sigma_k + sigma^2 I)`` (nats, a scalar tensor): a lower
    bound of ``-log p_sigma(y)`` over all patches ``y``, since each component's density
    peaks at its mean. ``noise_var``: ``sigma^2`` (unit^2), a float or a scalar tensor."""
    s2 = torch.as_tensor(noise_var, dtype=gmm.means.dtype, device=gmm.means.device)
    _, _, log_det = _noisy_spectrum(gmm, s2)
    d = gmm.means.shape[1]
    return -torch.logsumexp(gmm.log_weights - 0.5 * log_det, 0) + 0.5 * d * math.log(2 * math.pi)


def _noisy_spectrum(gmm: PatchGMM, s2: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each component's variances with the noise variance ``s2`` added: along its basis
    ``(K, r)``, across it ``(K,)``, and ``log det(Sigma_k + s2 I)`` ``(K,)``."""
    d, rank = gmm.means.shape[1], gmm.basis.shape[2]
    lam = gmm.variances + s2
    res = gmm.residual_variance + s2
    return lam, res, lam.log().sum(1) + (d - rank) * res.log()


def patch_grid(height: int, width: int, stride: int) -> tuple[int, int]:
    """The padded canvas ``(H', W')``: ``(height, width)`` rounded up to multiples of ``stride``."""
    return -(-height // stride) * stride, -(-width // stride) * stride


class GMMPatchPrior:
    """Gaussian-mixture patch prior on mu images ``(B, 1, H, W)`` (1/mm).

    Args:
        gmm: the patch mixture (normalized intensity).
        stride: patch grid stride; must divide the patch size.
        sigma_ref_unit: noise level at which :meth:`potential` and
            :meth:`log_prior_map` evaluate ``g_sigma`` and ``phi_sigma``.
        card: the model card it was loaded with (informational).
    """

    def __init__(self, gmm: PatchGMM, stride: int, sigma_ref_unit: float,
                 card: dict | None = None) -> None:
        p = gmm.patch_size
        if stride < 1 or p % stride:
            raise ValueError(f"stride {stride} must divide the patch size {p}")
        self.gmm = gmm
        self.stride = stride
        self.sigma_ref_unit = float(sigma_ref_unit)
        self.card = card or {}

    @classmethod
    def from_weights(cls, tensors: dict[str, torch.Tensor], card: dict, source: str, *,
                     device: str | torch.device = "cpu") -> GMMPatchPrior:
        """Build from a weights file's tensors and card (``architecture``: ``patch_size``,
        ``components``, ``rank``, ``stride``; ``sigma_ref_unit``); anything missing or
        mismatched raises ``ValueError`` naming ``source``."""
        try:
            arch = card["architecture"]
            k, p, r = int(arch["components"]), int(arch["patch_size"]), int(arch["rank"])
            stride, ref = int(arch["stride"]), float(card["sigma_ref_unit"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"model card of {source} is not a valid GMM card: {err!r}") from None
        d = p * p
        expected = {"means": torch.empty(k, d), "basis": torch.empty(k, d, r),
                    "variances": torch.empty(k, r), "residual_variance": torch.empty(k),
                    "log_weights": torch.empty(k)}
        check_state_dict(expected, tensors, source)
        gmm = PatchGMM(**{n: tensors[n] for n in PatchGMM.TENSORS}).to(device)
        return cls(gmm, stride, ref, card=card)

    # -- the patch grid -------------------------------------------------------------------

    def _patches(self, u: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B * n, d)`` patches of ``u`` ``(B, 1, H, W)`` on the circular grid of the
        air-padded canvas, and the canvas size."""
        p, s = self.gmm.patch_size, self.stride
        h, w = patch_grid(u.shape[-2], u.shape[-1], s)
        canvas = F.pad(u, (0, w - u.shape[-1], 0, h - u.shape[-2]))  # air = 0
        wrapped = F.pad(canvas, (0, p - s, 0, p - s), mode="circular")
        cols = F.unfold(wrapped, p, stride=s)  # (B, d, n)
        return cols.transpose(1, 2).reshape(-1, p * p), (h, w)

    def _average(self, patches: torch.Tensor, batch: int, canvas: tuple[int, int],
                 shape: tuple[int, int]) -> torch.Tensor:
        """Inverse of :meth:`_patches`: sum the patches back, wrap, divide by the coverage,
        crop to ``shape``; ``(B, 1, H, W)``."""
        p, s = self.gmm.patch_size, self.stride
        h, w = canvas
        cols = patches.reshape(batch, -1, p * p).transpose(1, 2)
        full = F.fold(cols, (h + p - s, w + p - s), p, stride=s)
        out = full[..., :h, :w].clone()
        out[..., : p - s, :] += full[..., h:, :w]
        out[..., :, : p - s] += full[..., :h, w:]
        out[..., : p - s, : p - s] += full[..., h:, w:]
        return out[..., : shape[0], : shape[1]] / (p // s) ** 2

    def denoise_unit(self, u: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_sigma(u), -log p_sigma per patch (B, n) in nats)`` for images ``u`` ``(B, 1,
        H, W)`` and noise stds ``s`` ``(B,)``, both in normalized intensity."""
        y, canvas = self._patches(u)
        per_image = y.shape[0] // u.shape[0]
        chunk = (_CHUNK_PATCHES_CPU if u.device.type == "cpu"
                 else _CHUNK_PATCHES_ACCELERATOR)
        # one noise level per block (blocks never straddle images): the noisy variances
        # stay (1, K, r) instead of one copy per patch
        blocks = [(b, a, min(a + chunk, (b + 1) * per_image))
                  for b in range(u.shape[0])
                  for a in range(b * per_image, (b + 1) * per_image, chunk)]
        outs, nll = zip(*(patch_posterior(self.gmm, y[a:end], s[b] * s[b])
                          for b, a, end in blocks), strict=True)
        denoised = self._average(torch.cat(outs), u.shape[0], canvas, u.shape[-2:])
        return denoised, torch.cat(nll).reshape(u.shape[0], per_image)

    def patch_terms(self, u: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`denoise_unit` with each patch's ``-log p_sigma`` counted from the mixture's
        peak bound (:func:`patch_peak_nll`): ``(D_sigma(u), (B, n) nats >= 0)``, the terms
        of the potential and the log-prior map."""
        denoised, nll = self.denoise_unit(u, s)
        peak = torch.stack([patch_peak_nll(self.gmm, v * v) for v in s])  # (B,)
        return denoised, nll - peak[:, None]

    # -- the prior's contract -------------------------------------------------------------

    def sigma_unit(self, sigma_mu: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(B,)`` normalized noise std of ``sigma_mu`` (1/mm, float or ``(B,)``)."""
        s = torch.as_tensor(sigma_mu_to_unit(sigma_mu), dtype=like.dtype, device=like.device)
        return s.reshape(-1).expand(like.shape[0])

    def prox(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``D_sigma(x)`` on mu images ``(B, 1, H, W)`` (1/mm); ``sigma``: 1/mm, float or
        ``(B,)``."""
        u = mu_to_unit(x)
        return unit_to_mu(self.denoise_unit(u, self.sigma_unit(sigma, u))[0])

    def prox_and_potential(self, z: torch.Tensor, sigma: float | torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_sigma(z), R(D_sigma(z)))``: mu ``(B, 1, H, W)`` and nats ``(B,)``, exact.

        ``R(D(z)) = phi_sigma(D(z)) / sigma^2 = (1/c) sum_i -log p_sigma(P_i z) - 1/2
        ||z - D(z)||^2 / sigma^2`` (normalized units)."""
        u = mu_to_unit(z)
        s = self.sigma_unit(sigma, u)
        denoised, nll = self.patch_terms(u, s)
        coverage = (self.gmm.patch_size // self.stride) ** 2
        step = (u - denoised).flatten(1).pow(2).sum(1)
        return unit_to_mu(denoised), nll.sum(1) / coverage - 0.5 * step / s**2

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``g_sigma(x) / sigma^2 = (1/c) sum_i -log p_sigma(P_i x)`` at ``sigma_ref_unit``,
        nats ``(B,)``: the patch likelihood of the image (the objective gradient-step PnP
        monitors). Not ``phi_sigma(x)``, which is known exactly only at prox outputs."""
        u = mu_to_unit(x)
        _, nll = self.patch_terms(u, self._sigma_ref(u))
        return nll.sum(1) / (self.gmm.patch_size // self.stride) ** 2

    def log_prior_map(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel terms of ``R(D(x))`` at ``sigma_ref_unit``, nats per pixel ``(B, 1, H, W)``.

        Each patch's ``-log p_sigma`` is spread evenly over its pixels, less ``1/2 (x -
        D(x))_i^2 / sigma^2``; the map sums to the second output of
        :meth:`prox_and_potential` at ``z = x`` when ``H`` and ``W`` are multiples of the
        stride (otherwise the share of the air padding is left out).
        """
        u = mu_to_unit(x)
        s = self._sigma_ref(u)
        denoised, nll = self.patch_terms(u, s)
        d = self.gmm.patch_size ** 2
        canvas = patch_grid(u.shape[-2], u.shape[-1], self.stride)
        spread = self._average((nll.reshape(-1, 1) / d).expand(-1, d), u.shape[0], canvas,
                               u.shape[-2:])
        return spread - 0.5 * (u - denoised).pow(2) / self.sigma_ref_unit**2

    def _sigma_ref(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full((like.shape[0],), self.sigma_ref_unit, dtype=like.dtype,
                          device=like.device)
