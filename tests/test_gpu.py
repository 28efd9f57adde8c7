"""The CUDA path: operators, priors and solvers follow the device of the data.

Marked ``gpu``; skipped where torch or ASTRA has no CUDA. Each result is compared
with the CPU's on the same input.
"""

import pytest
import torch

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.phantoms import load as load_phantom
from ctpnp.priors import TVPrior, load
from ctpnp.projector.backend import cuda_available
from ctpnp.quality import psnr_hu
from ctpnp.solvers import pnp_admm, pnp_drs, pnp_pgd, tv

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_available(), reason="needs CUDA in torch and ASTRA")]

GEOMETRY = ScanGeometry.clinical_fan((64, 64), 3.0, 120)


@pytest.fixture(scope="module")
def ops() -> tuple[Tomography, Tomography]:
    return Tomography(GEOMETRY, "cpu"), Tomography(GEOMETRY, "cuda")


@pytest.fixture(scope="module")
def scan() -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy scans of the water phantom (CPU): ``(y, true HU)``."""
    phantom = load_phantom("water_inserts")
    hu = torch.from_numpy(phantom.rasterize(GEOMETRY))[None, None].repeat(2, 1, 1, 1)
    clean = torch.from_numpy(phantom.project(GEOMETRY))[None, None].repeat(2, 1, 1, 1)
    return physics.simulate_low_dose(clean, 2e4, seed=1), hu


def _relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    return float((result - reference).norm() / reference.norm())


def test_projections_stay_on_the_device_and_match_the_cpu(ops, scan):
    """The CUDA kernels interpolate along rays, the CPU's matrix weighs lines through
    pixels: the same operator up to its discretization (a percent or two)."""
    cpu, gpu = ops
    y, _ = scan
    x = cpu.fbp(y)
    forward, adjoint = gpu.forward(x.cuda()), gpu.adjoint(y.cuda())
    assert forward.device.type == "cuda" and adjoint.device.type == "cuda"
    errors = (_relative_error(forward.cpu(), cpu.forward(x)),
              _relative_error(adjoint.cpu(), cpu.adjoint(y)))
    assert max(errors) < 0.03, errors


def test_projections_copy_nothing_to_the_host(ops, scan):
    """ASTRA reads and writes the CUDA tensors in place: no device-to-host copy at all."""
    _, gpu = ops
    x = gpu.fbp(scan[0].cuda())
    gpu.gram(x)  # first call: set-up outside the measurement
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        gpu.gram(x)
        torch.cuda.synchronize()
    names = [event.name for event in profile.events()]
    assert not [n for n in names if "DtoH" in n or "Device -> Pageable" in n], names


def test_loaded_priors_follow_the_device(ops, scan):
    _, gpu = ops
    for name in ("lpn", "prox", "gmm"):
        prior = load(name, device="cuda")
        x = gpu.fbp(scan[0].cuda())
        assert prior.prox(x, 0.001).device.type == "cuda", name


class _CudaKernelsForCpuTensors:
    """The CUDA backend's projections, taking and giving CPU tensors."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backend.forward(images.cuda()).cpu()

    def adjoint(self, sinograms: torch.Tensor) -> torch.Tensor:
        return self.backend.adjoint(sinograms.cuda()).cpu()

    def fbp(self, sinograms: torch.Tensor, *args) -> torch.Tensor:
        return self.backend.fbp(sinograms.cuda(), *args).cpu()


@pytest.fixture(scope="module")
def cpu_with_cuda_kernels(ops) -> Tomography:
    """A CPU operator that projects with the CUDA kernels: the solvers' CPU and CUDA runs
    then see one operator, and any difference is the solver's or the prior's device
    handling (the kernels themselves differ from the CPU's by a percent or two)."""
    op = Tomography(GEOMETRY, "cpu", backend="odl")
    op._backend = _CudaKernelsForCpuTensors(ops[1]._backend)
    return op


def _max_psnr_difference(on_cpu: torch.Tensor, on_gpu: torch.Tensor, hu: torch.Tensor
                         ) -> float:
    assert on_gpu.device.type == "cuda"
    return float((psnr_hu(physics.mu_to_hu(on_cpu), hu)
                  - psnr_hu(physics.mu_to_hu(on_gpu.cpu()), hu)).abs().max())


@pytest.mark.parametrize("prior_name", ["tv", "prox", "lpn", "gmm"])
@pytest.mark.parametrize("solve", [pnp_admm, pnp_drs, pnp_pgd])
def test_pnp_solvers_on_cuda_give_the_cpu_result(ops, cpu_with_cuda_kernels, scan, solve,
                                                 prior_name):
    _, gpu = ops
    y, hu = scan
    on_cpu = solve(y, cpu_with_cuda_kernels, load(prior_name), max_iter=10, rtol=0.0).x
    on_gpu = solve(y.cuda(), gpu, load(prior_name, device="cuda"), max_iter=10, rtol=0.0).x
    assert _max_psnr_difference(on_cpu, on_gpu, hu) < 0.01


def test_tv_on_cuda_gives_the_cpu_result(ops, cpu_with_cuda_kernels, scan):
    _, gpu = ops
    y, hu = scan
    on_cpu = tv(y, cpu_with_cuda_kernels, max_iter=100).x
    assert _max_psnr_difference(on_cpu, tv(y.cuda(), gpu, max_iter=100).x, hu) < 0.01


def test_cuda_and_cpu_kernels_give_close_reconstructions(ops, scan):
    """The two discretizations, each with its own solver run: measured on the H200,
    10 PnP-ADMM iterations with TV at this coarse grid (3 mm pixels) differ by 0.44 dB;
    at 512² and 0.7 mm, 50 TV iterations by 0.03 dB (``benchmarks/bench_gpu.py``)."""
    cpu, gpu = ops
    y, hu = scan
    on_cpu = pnp_admm(y, cpu, TVPrior(), max_iter=10, rtol=0.0).x
    on_gpu = pnp_admm(y.cuda(), gpu, TVPrior(), max_iter=10, rtol=0.0).x
    assert _max_psnr_difference(on_cpu, on_gpu, hu) < 1.0
