"""The whole pipeline on CUDA: FBP, TV and PnP-ADMM with both priors at 512², a batch of 8,
then a 64-slice volume through ``ctpnp reconstruct --device cuda``; results checked against
the CPU's.

Held-out random-anatomy phantoms (:data:`ctpnp.evaluation.TEST_SEEDS`, both doses,
repeated to a batch of 8), 512² at :data:`~ctpnp.evaluation.PIXEL_MM`, 360 views
of the clinical fan. Each method runs once on the batch on the GPU (seconds per
slice), and on the first ``--cpu-items`` scans on the CPU with the same settings;
the PSNR of each item must agree within 0.05 dB (goal of issue 18; PnP default:
at most 2 s a slice in the batch of 8). The volume: 64 slices of the test phantoms
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

SIZE = 512
VIEWS = 360
BATCH = 8
VOLUME_SLICES = 64
TOLERANCE_DB = 0.05


def methods(op: Tomography) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each method with its defaults on ``op``'s device: ``y -> μ images``."""
    lpn, prox = load("lpn", device=op.device), load("prox", device=op.device)
    return {
        "FBP (Hann)": lambda y: op.fbp(y),
        "TV (PDHG)": lambda y: tv(y, op).x,
        "PnP-ADMM LPN": lambda y: pnp_admm(y, op, lpn).x,
        "PnP-ADMM Prox": lambda y: pnp_admm(y, op, prox).x,
    }


def timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    """``(result, seconds)`` with the device synchronized around the call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def batch_rows(cpu_items: int) -> list[dict]:
    """The methods on a batch of 8 on CUDA, and on the first ``cpu_items`` on the CPU."""
    geometry = ScanGeometry.clinical_fan((SIZE, SIZE), PIXEL_MM, VIEWS)
    gpu, cpu = Tomography(geometry, "cuda"), Tomography(geometry, "cpu")
    scans = list(phantom_scans(cpu, list(TEST_SEEDS), list(DOSES.values())))
    scans = [scans[i % len(scans)] for i in range(BATCH)]
    y = torch.cat([scan[2] for scan in scans])
    hu = torch.cat([scan[3] for scan in scans])
    on_gpu, on_cpu = methods(gpu), methods(cpu)
    rows = []
    for name, solve in on_gpu.items():
        images, seconds = timed(lambda solve=solve: solve(y.to(gpu.device)), gpu.device)
        gpu_psnr = psnr_hu(physics.mu_to_hu(images.cpu()), hu)
        cpu_images, cpu_seconds = timed(lambda name=name: on_cpu[name](y[:cpu_items]),
                                        cpu.device)
        cpu_psnr = psnr_hu(physics.mu_to_hu(cpu_images), hu[:cpu_items])
        difference = float((gpu_psnr[:cpu_items] - cpu_psnr).abs().max())
        rows.append({"method": name, "gpu s/slice (batch 8)": seconds / BATCH,
                     "cpu s/slice": cpu_seconds / cpu_items,
                     "psnr gpu (dB)": float(gpu_psnr.mean()),
                     "max |psnr gpu - cpu| (dB)": difference,
                     "equal to cpu": difference < TOLERANCE_DB})
        print(f"{name}: {seconds / BATCH:.2f} s/slice on CUDA, |dPSNR| {difference:.3f} dB",
              flush=True)
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
    rows = batch_rows(args.cpu_items)
    print_table(f"{SIZE}², {VIEWS} views, batch of {BATCH} on {torch.cuda.get_device_name()}",
                rows)
    volume = None
    if not args.skip_volume:
        with tempfile.TemporaryDirectory() as work:
            volume = volume_row(Path(work))
        print_table(f"{VOLUME_SLICES}-slice volume, ctpnp reconstruct --device cuda", [volume])
    write_json("bench_gpu", {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(), "size": SIZE, "views": VIEWS,
        "batch": BATCH, "cpu_items": args.cpu_items, "tolerance_db": TOLERANCE_DB,
        "rows": rows, "volume": volume,
        "all_equal_to_cpu": all(row["equal to cpu"] for row in rows)})


if __name__ == "__main__":
    main()
