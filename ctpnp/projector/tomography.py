"""The CT forward model as a differentiable torch operator."""

from __future__ import annotations

import torch

from ctpnp.linalg import CGResult, batch_dot, conjugate_gradient
from ctpnp.projector.autograd import Backproject, Project
from ctpnp.projector.backend import OdlRayTransform, resolve_device
from ctpnp.projector.fbp_filter import WINDOWS
from ctpnp.projector.matrix import MatrixRayTransform, choose_backend
from ctpnp.scanner.geometry import ScanGeometry


class Tomography:
    """Ray transform ``A`` of a scan on ASTRA, for batches of slices.

    Images are float32 ``(B, 1, H, W)`` tensors of μ (1/mm) on :attr:`device`;
    sinograms are float32 ``(B, 1, views, channels)`` post-log line integrals
    (dimensionless). :meth:`forward` and :meth:`adjoint` are torch autograd
    operations, so gradients flow through them into networks.

    Args:
        geometry: the scan and image grid.
        device: ``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``None`` (CUDA when torch
            and ASTRA both support it, else CPU). Asking for CUDA without it
            raises ``RuntimeError`` naming the CPU fallback.
        backend: how :meth:`forward` and :meth:`adjoint` project. ``"auto"``:
            on the CPU ASTRA's system matrix as multi-threaded sparse products
            (:mod:`ctpnp.projector.matrix`; the same operator, several times
            faster) when it fits ``max_matrix_mib``, else ODL + ASTRA;
            ``"matrix"``: the system matrix or a ``MemoryError`` at the first
            projection; ``"odl"``: ODL +
            ASTRA (``astra_cpu``/``astra_cuda``), the reference. CUDA always uses ODL's
            ``astra_cuda`` projector (:mod:`ctpnp.projector.cuda`).
        max_matrix_mib: memory the system matrix may take (default 2048 MiB,
            at most half the available memory).
    """

    def __init__(
        self,
        geometry: ScanGeometry,
        device: str | torch.device | None = None,
        *,
        backend: str = "auto",
        max_matrix_mib: float | None = None,
    ) -> None:
        if not isinstance(geometry, ScanGeometry):
            raise TypeError(f"geometry: expected a ScanGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.device = resolve_device(device)
        self._backend = choose_backend(OdlRayTransform(geometry, self.device), backend,
                                       max_matrix_mib)
        self._norm: float | None = None

    def __repr__(self) -> str:
        return f"Tomography({self.geometry!r}, device='{self.device}')"

    @property
    def backend(self) -> str:
        """``"matrix"`` or ``"odl"``: what :meth:`forward` and :meth:`adjoint` run on.

        With the matrix backend this obtains the matrix (as the first projection would).
        """
        if isinstance(self._backend, MatrixRayTransform) and self._backend.matrix is not None:
            return "matrix"
        return "odl"

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.geometry.image_shape

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(views, channels)``."""
        return self.geometry.sinogram_shape

    # ------------------------------------------------------------------ operators
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Line integrals ``A x``: ``(B, 1, H, W)`` μ (1/mm) → ``(B, 1, views, channels)``."""
        self._check(images, self.image_shape, "images")
        return Project.apply(images, self._backend)

    __call__ = forward

    def adjoint(self, sinograms: torch.Tensor) -> torch.Tensor:
        """Back-projection ``A^T y``: ``(B, 1, views, channels)`` → ``(B, 1, H, W)``."""
        self._check(sinograms, self.sinogram_shape, "sinograms")
        return Backproject.apply(sinograms, self._backend)

    def gram(self, images: torch.Tensor) -> torch.Tensor:
        """``A^T A x`` for ``(B, 1, H, W)`` images."""
        return self.adjoint(self.forward(images))

    def fbp(
        self,
        sinograms: torch.Tensor,
        filter: str = "hann",
        frequency_scaling: float = 1.0,
    ) -> torch.Tensor:
        """Filtered back-projection (see :mod:`ctpnp.projector.fbp_filter`), not differentiable.

        Args:
            sinograms: ``(B, 1, views, channels)`` line integrals.
            filter: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``.
            frequency_scaling: cut-off as a fraction of the Nyquist frequency, in (0, 1].

        Returns:
            ``(B, 1, H, W)`` μ (1/mm).
        """
        name = filter.lower()
        if name not in WINDOWS:
            raise ValueError(f"filter={filter!r} is unknown: expected one of {list(WINDOWS)}")
        if not 0 < frequency_scaling <= 1:
            raise ValueError(f"frequency_scaling={frequency_scaling!r} must be in (0, 1]")
        self._check(sinograms, self.sinogram_shape, "sinograms")
        return self._backend.fbp(sinograms, name, frequency_scaling)

    # ------------------------------------------------------------------ linear algebra
    def norm(self, *, rtol: float = 1e-4, maxiter: int = 100) -> float:
        """Operator norm ``||A||`` by the power method on ``A^T A`` (cached).

        The power method approaches the norm from below; the estimate is
        accurate to ``rtol``. Step sizes derived from it (``1 / ||A||^2``)
        should keep a small safety margin.
        """
        if self._norm is None:
            generator = torch.Generator().manual_seed(0)
            x = torch.rand((1, 1, *self.image_shape), generator=generator).to(self.device)
            estimate = 0.0
            with torch.no_grad():
                for _ in range(maxiter):
                    y = self.gram(x)
                    new_estimate = float(batch_dot(y, x)[0] / batch_dot(x, x)[0])
                    x = y / y.norm()
                    if abs(new_estimate - estimate) <= rtol * new_estimate:
                        estimate = new_estimate
                        break
                    estimate = new_estimate
            self._norm = estimate**0.5
        return self._norm

    def solve_normal(
        self,
        b: torch.Tensor,
        rho: float | torch.Tensor,
        x0: torch.Tensor | None = None,
        *,
        tol: float = 1e-5,
        maxiter: int = 100,
    ) -> CGResult:
        """Solve ``(A^T A + rho I) x = b`` by conjugate gradients, per batch item.

        Args:
            b: ``(B, 1, H, W)`` right-hand side (e.g. ``A^T y + rho z``).
            rho: non-negative scalar or ``(B,)`` tensor (one per item), in the
                units of ``A^T A`` (mm²).
            x0: warm start ``(B, 1, H, W)``, e.g. the previous iterate.
            tol: relative residual to reach.
            maxiter: maximum CG iterations.
        """
        self._check(b, self.image_shape, "b")
        if x0 is not None:
            self._check(x0, self.image_shape, "x0")
        rho_t = torch.as_tensor(rho, dtype=torch.float32, device=self.device)
        if rho_t.ndim > 1 or (rho_t.ndim == 1 and rho_t.shape[0] != b.shape[0]):
            raise ValueError(f"rho: expected a scalar or shape ({b.shape[0]},), "
                             f"got shape {tuple(rho_t.shape)}")
        if bool((rho_t < 0).any()):
            raise ValueError(f"rho must be non-negative, got {rho}")
        rho_t = rho_t.reshape(-1, 1, 1, 1)
        with torch.no_grad():
            return conjugate_gradient(lambda x: self.gram(x) + rho_t * x, b.detach(), x0,
                                      tol=tol, maxiter=maxiter)

    # ------------------------------------------------------------------ validation
    def _check(self, tensor: torch.Tensor, shape: tuple[int, int], name: str) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype != torch.float32:
            raise TypeError(f"{name}: expected dtype torch.float32, got {tensor.dtype}")
        expected = ("B", 1, *shape)
        if tensor.ndim != 4 or tuple(tensor.shape[1:]) != (1, *shape) or tensor.shape[0] < 1:
            raise ValueError(f"{name}: expected shape {expected}, got {tuple(tensor.shape)}")
        if tensor.device != self.device:
            raise ValueError(f"{name}: expected a tensor on {self.device}, got one on "
                             f"{tensor.device}; move it with .to('{self.device}')")
