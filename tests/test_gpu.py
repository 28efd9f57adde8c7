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
    hu = torch.from_numpy(phantom.rasterize(GEOMETRY))[None, None]
    clean = torch.from_numpy(phantom.project(GEOMETRY))[None, None].repeat(2, 1, 1, 1)
    return physics.simulate_low_dose(clean, 2e4, seed=1), hu


def test_projections_stay_on_the_device_and_match_the_cpu(ops, scan):
    cpu, gpu = ops
    y, _ = scan
    x = cpu.fbp(y)
    forward, adjoint = gpu.forward(x.cuda()), gpu.adjoint(y.cuda())
    assert forward.device.type == "cuda" and adjoint.device.type == "cuda"
    torch.testing.assert_close(forward.cpu(), cpu.forward(x), rtol=2e-3, atol=2e-3 * float(
        cpu.forward(x).abs().max()))
    torch.testing.assert_close(adjoint.cpu(), cpu.adjoint(y), rtol=2e-3, atol=2e-3 * float(
        cpu.adjoint(y).abs().max()))


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
    for name in ("lpn", "prox"):
        prior = load(name, device="cuda")
        x = gpu.fbp(scan[0].cuda())
        assert prior.prox(x, 0.001).device.type == "cuda", name


@pytest.mark.parametrize("solve", [pnp_admm, pnp_drs, pnp_pgd])
def test_pnp_solvers_on_cuda_give_the_cpu_result(ops, scan, solve):
    cpu, gpu = ops
    y, hu = scan
    prior = TVPrior()
    on_cpu = solve(y, cpu, prior, max_iter=10, rtol=0.0).x
    on_gpu = solve(y.cuda(), gpu, prior, max_iter=10, rtol=0.0).x
    assert on_gpu.device.type == "cuda"
    psnr_cpu = psnr_hu(physics.mu_to_hu(on_cpu), hu)
    psnr_gpu = psnr_hu(physics.mu_to_hu(on_gpu.cpu()), hu)
    assert float((psnr_cpu - psnr_gpu).abs().max()) < 0.05


def test_tv_on_cuda_gives_the_cpu_result(ops, scan):
    cpu, gpu = ops
    y, hu = scan
    on_cpu, on_gpu = tv(y, cpu, max_iter=100).x, tv(y.cuda(), gpu, max_iter=100).x
    assert on_gpu.device.type == "cuda"
    difference = psnr_hu(physics.mu_to_hu(on_cpu), hu) - psnr_hu(
        physics.mu_to_hu(on_gpu.cpu()), hu)
    assert float(difference.abs().max()) < 0.05
