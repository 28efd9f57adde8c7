"""Tomography on the real ODL + ASTRA: adjointness, gradients, FBP, CG, errors."""

import pytest
import torch
from conftest import geometries

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.quality import FULL_WINDOW, SOFT_TISSUE_WINDOW, psnr_hu

GEOMETRIES = geometries()
OPS = {name: Tomography(g, device="cpu") for name, g in GEOMETRIES.items()}

# Documented FBP quality of the noiseless modified Shepp–Logan on the 128² test
# grid (Hann filter, full HU window [-1000, 2000]), measured 25.8 / 26.4 / 25.1 dB;
# the curved detector pays for two channel interpolations. See README "Accuracy".
NOISELESS_FBP_PSNR_DB = {"parallel": 25.5, "fan-flat": 26.0, "fan-curved": 24.8}


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


@pytest.mark.parametrize("name", OPS)
def test_adjoint_is_the_transpose(name):
    op = OPS[name]
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((2, 1, *op.image_shape), generator=generator)
    y = torch.rand((2, 1, *op.sinogram_shape), generator=generator)
    lhs, rhs = _dot(op.forward(x), y), _dot(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs)


@pytest.mark.parametrize("name", OPS)
def test_gradient_matches_finite_differences(name):
    op = OPS[name]
    generator = torch.Generator().manual_seed(2)
    x = torch.rand((2, 1, *op.image_shape), generator=generator) * 0.02
    y = op.forward(torch.rand((2, 1, *op.image_shape), generator=generator) * 0.02)
    v = torch.randn(x.shape, generator=generator) * 1e-3

    def loss(image):
        return 0.5 * (op.forward(image) - y).double().pow(2).sum()

    x.requires_grad_(True)
    loss(x).backward()
    eps = 1.0
    with torch.no_grad():
        finite = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
    assert float(finite) == pytest.approx(_dot(x.grad, v), rel=1e-3)


def test_gradients_flow_through_both_operators_into_parameters():
    op = OPS["fan-curved"]
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    x = torch.rand((2, 1, *op.image_shape))
    sinogram = op.forward(conv(x))
    back = op.adjoint(sinogram)
    back.pow(2).mean().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0
    # second derivative of a quadratic data term: Hessian-vector product = A^T A v
    image = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(0.5 * op.forward(image).pow(2).sum(), image, create_graph=True)
    v = torch.rand_like(x)
    (hvp,) = torch.autograd.grad((grad * v).sum(), image)
    torch.testing.assert_close(hvp, op.gram(v), rtol=1e-4, atol=1e-3)


def test_batch_items_are_independent():
    op = OPS["fan-flat"]
    x = torch.rand((3, 1, *op.image_shape))
    torch.testing.assert_close(op.forward(x)[1:2], op.forward(x[1:2]), rtol=0, atol=0)


@pytest.mark.parametrize("name", OPS)
def test_fbp_of_noiseless_shepp_logan(name, shepp_logan_hu, shepp_logan_mu):
    op = OPS[name]
    recon_hu = physics.mu_to_hu(op.fbp(op.forward(shepp_logan_mu), filter="hann"))
    assert float(psnr_hu(recon_hu, shepp_logan_hu, FULL_WINDOW)) > NOISELESS_FBP_PSNR_DB[name]


def test_hann_beats_ram_lak_on_low_dose_data(shepp_logan_hu, shepp_logan_mu):
    op = OPS["fan-curved"]
    # 300 photons per reading: Ram-Lak amplifies the noise far more than it sharpens
    noisy = physics.simulate_low_dose(op.forward(shepp_logan_mu), 300.0, seed=5)
    for window in (FULL_WINDOW, SOFT_TISSUE_WINDOW):
        hann = psnr_hu(physics.mu_to_hu(op.fbp(noisy, filter="hann")), shepp_logan_hu, window)
        ram_lak = psnr_hu(physics.mu_to_hu(op.fbp(noisy, filter="ram-lak")), shepp_logan_hu,
                          window)
        assert float(hann) > float(ram_lak) + 1.0


def test_norm_bounds_the_operator_and_is_cached():
    op = Tomography(ScanGeometry.parallel((48, 48), 2.0, 60))
    norm = op.norm()
    x = torch.rand((4, 1, 48, 48))
    ratios = op.forward(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert float(ratios.max()) <= norm * (1 + 1e-3)
    # the power method's estimate is attained: ||A v|| / ||v|| ≈ norm for its vector
    assert norm > 0.9 * float(ratios.max())
    assert op.norm() is norm


def test_solve_normal_reaches_tolerance_and_warm_start_helps():
    op = OPS["parallel"]
    generator = torch.Generator().manual_seed(4)
    truth = torch.rand((2, 1, *op.image_shape), generator=generator) * 0.02
    rho = torch.tensor([1.0, 10.0])
    b = op.adjoint(op.forward(truth)) + rho.view(-1, 1, 1, 1) * truth
    cold = op.solve_normal(b, rho, tol=1e-4, maxiter=200)
    true_residual = (op.gram(cold.x) + rho.view(-1, 1, 1, 1) * cold.x - b).flatten(1).norm(dim=1)
    assert bool(cold.converged.all())
    assert bool((true_residual / b.flatten(1).norm(dim=1) < 2e-4).all())
    warm = op.solve_normal(b, rho, x0=truth + 1e-4, tol=1e-4, maxiter=200)
    assert warm.n_iter < cold.n_iter
    # one item solved alone gives the same answer as inside the batch
    alone = op.solve_normal(b[1:], rho[1:], tol=1e-4, maxiter=200)
    torch.testing.assert_close(alone.x, cold.x[1:], rtol=1e-5, atol=1e-8)


def test_bad_inputs_say_what_was_expected():
    op = OPS["parallel"]
    h, w = op.image_shape
    with pytest.raises(TypeError, match="float32"):
        op.forward(torch.zeros((1, 1, h, w), dtype=torch.float64))
    expected = r"expected shape \('B', 1, 128, 128\), got \(1, 128, 128\)"
    with pytest.raises(ValueError, match=expected):
        op.forward(torch.zeros((1, h, w)))
    with pytest.raises(ValueError, match="sinograms: expected shape"):
        op.adjoint(torch.zeros((1, 1, h, w)))
    with pytest.raises(ValueError, match="on cpu"):
        op.forward(torch.zeros((1, 1, h, w), device="meta"))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        op.forward(torch.zeros((1, 1, h, w)).numpy())
    with pytest.raises(ValueError, match="filter='gauss'"):
        op.fbp(torch.zeros((1, 1, *op.sinogram_shape)), filter="gauss")
    with pytest.raises(ValueError, match="rho"):
        op.solve_normal(torch.zeros((2, 1, h, w)), torch.ones(3))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_asking_for_cuda_without_it_names_the_cpu_fallback():
    with pytest.raises(RuntimeError, match="device='cpu'"):
        Tomography(GEOMETRIES["parallel"], device="cuda")
