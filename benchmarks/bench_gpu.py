"""The whole pipeline on CUDA: FBP, TV and PnP-ADMM with both priors at 512², a batch of 8,
then a 64-slice volume through ``ctpnp reconstruct --device cuda``; results checked against
the CPU's.

Held-out random-anatomy phantoms (:data:`ctpnp.evaluation.TEST_SEEDS`, both doses,
repeated to a batch of 8), 512² at :data:`~ctpnp.evaluation.PIXEL_MM`, 360 views
of the clinical fan. Each method runs once on the batch on the GPU (seconds per
slice); then the first ``--cpu-items`` scans run on both devices for a fixed
iteration count (:data:`CHECK_STOP`), and the PSNR of each item must agree
within 0.05 dB (goal of issue 18; PnP default: at most 2 s a slice in the batch
of 8). The JSON is rewritten after each method, so an interrupted run keeps
what it measured. The volume: 64 slices of the test phantoms
written as a CT series, ``ctpnp simulate`` at 1e4 photons, then ``ctpnp reconstruct
--device cuda`` (seconds, slices per second).

Run: ``.venv/bin/python benchmarks/bench_gpu.py [--cpu-items 1] [--skip-volume]``. Without
CUDA (torch and ASTRA) it says so and exits with status 2. Writes
``results/bench_gpu.json``.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import print_table, write_json

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.evaluation import DOSES, PIXEL_MM, TEST_SEEDS, phantom_scans
from ctpnp.priors import load
from ctpnp.projector.backend import cuda_available
from ctpnp.quality import psnr_hu
from ctpnp.solvers import pnp_admm, tv
from ctpnp.solvers.monitor import SolverResult

SIZE = 512
VIEWS = 360
BATCH = 8
VOLUME_SLICES = 64
TOLERANCE_DB = 0.05


CHECK_STOP = {"TV (PDHG)": {"max_iter": 50, "rtol": 0.0},
              "PnP-ADMM LPN": {"max_iter": 5, "rtol": 0.0},
              "PnP-ADMM Prox": {"max_iter": 5, "rtol": 0.0},
              "PnP-ADMM GMM": {"max_iter": 5, "rtol": 0.0}}
"""The CPU check runs each iterative method for a fixed count on both devices (a
default run stops by its tolerance, and an iteration more or less on one device
would hide or fake a difference; a converged 512² TV on the CPU takes minutes)."""


def methods(op: Tomography) -> dict[str, Callable[..., SolverResult | torch.Tensor]]:
    """Each method with its defaults on ``op``'s device: ``(y, **stop) -> result``."""
    lpn, prox, gmm = (load(name, device=op.device) for name in ("lpn", "prox", "gmm"))
    return {
        "FBP (Hann)": lambda y, **_: op.fbp(y),
        "TV (PDHG)": lambda y, **stop: tv(y, op, **stop),
        "PnP-ADMM LPN": lambda y, **stop: pnp_admm(y, op, lpn, **stop),
        "PnP-ADMM Prox": lambda y, **stop: pnp_admm(y, op, prox, **stop),
        "PnP-ADMM GMM": lambda y, **stop: pnp_admm(y, op, gmm, **stop),
    }


def timed(run: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``(result, seconds)`` with the device synchronized around the call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def images_of(result: SolverResult | torch.Tensor) -> torch.Tensor:
    """The ``(B, 1, H, W)`` μ images of a solver result or of FBP, on the CPU."""
    return (result.x if isinstance(result, SolverResult) else result).cpu()


def batch_rows(cpu_items: int, on_row: Callable[[list[dict]], None]) -> list[dict]:
    """The methods' defaults on a batch of 8 on CUDA; fixed-count runs of the first
    ``cpu_items`` scans on CUDA and on the CPU, compared."""
    geometry = ScanGeometry.clinical_fan((SIZE, SIZE), PIXEL_MM, VIEWS)
    gpu, cpu = Tomography(geometry, "cuda"), Tomography(geometry, "cpu")
    scans = list(phantom_scans(cpu, list(TEST_SEEDS), list(DOSES.values())))
    scans = [scans[i % len(scans)] for i in range(BATCH)]
    y = torch.cat([scan[2] for scan in scans])
    hu = torch.cat([scan[3] for scan in scans])
    on_gpu, on_cpu = methods(gpu), methods(cpu)
    y_gpu = y.to(gpu.device)
    for solve in on_gpu.values():  # warm-up: CUDA context, kernels, ASTRA set-up
        solve(y_gpu[:1], max_iter=1)
    rows = []
    for name, solve in on_gpu.items():
        result, seconds = timed(lambda solve=solve: solve(y_gpu), gpu.device)
        gpu_psnr = psnr_hu(physics.mu_to_hu(images_of(result)), hu)
        stop = CHECK_STOP.get(name, {})
        check_gpu, _ = timed(lambda solve=solve, stop=stop: solve(y_gpu[:cpu_items], **stop),
                             gpu.device)
        check_cpu, cpu_seconds = timed(
            lambda name=name, stop=stop: on_cpu[name](y[:cpu_items], **stop), cpu.device)
        difference = float((psnr_hu(physics.mu_to_hu(images_of(check_gpu)), hu[:cpu_items])
                            - psnr_hu(physics.mu_to_hu(images_of(check_cpu)), hu[:cpu_items])
                            ).abs().max())
        iterations = (result.n_iter.float().mean().item() if isinstance(result, SolverResult)
                      else None)
        rows.append({"method": name, "gpu s/slice (batch 8)": seconds / BATCH,
                     "iterations (mean)": iterations,
                     "psnr gpu (dB)": float(gpu_psnr.mean()),
                     "check iterations": stop.get("max_iter"),
                     "cpu s/slice (check)": cpu_seconds / cpu_items,
                     "max |psnr gpu - cpu| (dB)": difference,
                     "equal to cpu": difference < TOLERANCE_DB})
        print(f"{name}: {seconds / BATCH:.2f} s/slice on CUDA ({iterations} its), "
              f"|dPSNR| {difference:.4f} dB", flush=True)
        on_row(rows)
    return rows


def volume_row(work: Path) -> dict:
    """64 slices through ``ctpnp simulate`` and ``ctpnp reconstruct --device cuda``."""
    from ctpnp.io import axial_affine, write_ct_series

    geometry = ScanGeometry.clinical_fan((SIZE, SIZE), PIXEL_MM, VIEWS)
    cpu = Tomography(geometry, "cpu", backend="odl")
    phantoms = [scan[3][0, 0] for scan in phantom_scans(cpu, list(TEST_SEEDS), [1e5])]
    hu = torch.stack([phantoms[i % len(phantoms)] for i in range(VOLUME_SLICES)]).numpy()
    write_ct_series(hu, work / "images", affine=axial_affine(hu.shape, (1.0, PIXEL_MM, PIXEL_MM)))
    ctpnp = [sys.executable, "-m", "ctpnp.cli"]
    subprocess.run([*ctpnp, "simulate", str(work / "images"), str(work / "scan"),
                    "--photons", "1e4", "--views", str(VIEWS)], check=True)
    start = time.perf_counter()
    done = subprocess.run([*ctpnp, "reconstruct", str(work / "scan"), str(work / "study"),
                           "--device", "cuda", "--size", str(SIZE), "--pixel-mm", str(PIXEL_MM)])
    seconds = time.perf_counter() - start
    return {"slices": VOLUME_SLICES, "seconds": seconds, "slices/s": VOLUME_SLICES / seconds,
            "exit status": done.returncode,
            "dicom files written": sum(1 for _ in (work / "study").rglob("*.dcm"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-items", type=int, default=1, choices=range(1, BATCH + 1),
                        metavar="N", help="scans of the batch also run on the CPU (1-8)")
    parser.add_argument("--skip-volume", action="store_true")
    args = parser.parse_args()
    if not cuda_available():
        missing = "torch has no CUDA device" if not torch.cuda.is_available() \
            else "ASTRA was built without CUDA"
        print(f"bench_gpu: needs CUDA, but {missing}; nothing was measured.", file=sys.stderr)
        sys.exit(2)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def record(rows: list[dict], volume: dict | None = None) -> None:
        write_json("bench_gpu", {
            "date": started, "device": torch.cuda.get_device_name(), "size": SIZE,
            "views": VIEWS, "batch": BATCH, "cpu_items": args.cpu_items,
            "tolerance_db": TOLERANCE_DB, "check_stop": CHECK_STOP, "rows": rows,
            "volume": volume, "all_equal_to_cpu": all(row["equal to cpu"] for row in rows)})

    rows = batch_rows(args.cpu_items, record)
    print_table(f"{SIZE}², {VIEWS} views, batch of {BATCH} on {torch.cuda.get_device_name()}",
                rows)
    if not args.skip_volume:
        with tempfile.TemporaryDirectory() as work:
            volume = volume_row(Path(work))
        print_table(f"{VOLUME_SLICES}-slice volume, ctpnp reconstruct --device cuda", [volume])
        record(rows, volume)


if __name__ == "__main__":
    main()
