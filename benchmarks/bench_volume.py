"""Whole volumes: slices per second with 1 vs 2 worker processes, peak memory for 8 vs 64 slices.

Two workloads, 20 iterations a slice: the default method (PnP-ADMM with the
default prior) at 256², 1 mm, 180 views (~30 s a slice on one core), the
work a user runs; and TV at 128², 2 mm (~3 s a slice), short enough that the
workers' start-up (importing torch, ODL and ASTRA in each spawned process,
3-5 s) shows. Goals (issue 6): two workers >= 1.8x the slices per second of
one; the peak memory of a 64-slice volume no higher than that of an 8-slice
one (the slices stream through; measured with TV).

Run: ``.venv/bin/python benchmarks/bench_volume.py`` (about 10 minutes, idle machine).

``--large`` runs issue 18's workload instead: the default method at 512², 0.8 mm,
360 views on a 16-slice volume (``--iterations`` a slice, 5 by default: a fixed
amount of work), one worker against two, and the peak memory of one process
over 4 and 16 slices. The projector's matrix is built (or loaded) once by the
calling process, and the workers map the cached file.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch
from common import peak_rss_mib, print_table, write_json

from ctpnp import ScanGeometry, physics
from ctpnp.apps.volume import reconstruct_volume
from ctpnp.phantoms import load
from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR

PARAMS = {"max_iter": 20, "rtol": 0.0}  # a fixed amount of work per slice
SMALL = ScanGeometry.clinical_fan((128, 128), 2.0, 180)
WORKLOADS = {
    f"{DEFAULT_METHOD} ({DEFAULT_PRIOR}) 256²": (ScanGeometry.clinical_fan((256, 256), 1.0, 180),
                                               DEFAULT_METHOD),
    "TV 128²": (SMALL, "tv"),
}


class NoisyScans:
    """A lazy volume: slice ``i`` is the phantom's scan with noise seed ``i``, made on access."""

    def __init__(self, n_slices: int, geometry: ScanGeometry) -> None:
        self.n_slices = n_slices
        self.clean = torch.from_numpy(load("water_inserts").project(geometry))[None, None]

    def __len__(self) -> int:
        return self.n_slices

    def __getitem__(self, index: int) -> np.ndarray:
        return physics.simulate_low_dose(self.clean, 2e4, seed=index)[0, 0].numpy()


def run(n_slices: int, workers: int, geometry: ScanGeometry, method: str, params: dict = PARAMS
        ) -> tuple[float, float]:
    """(wall seconds with worker start-up, seconds from the first finished slice to the end)."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        reconstruct_volume(NoisyScans(n_slices, geometry), geometry, out_dir, method=method,
                           prior=DEFAULT_PRIOR, params=params, workers=workers, device="cpu",
                           progress=lambda _done, _total, _note: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - start
    return wall, stamps[-1] - stamps[1]


def speed_table(label: str, n: int, timings: dict[int, tuple[float, float]]
                ) -> tuple[list[dict], dict]:
    """Table rows and JSON record of ``n`` slices from ``{workers: (wall s, steady s)}``."""
    rows, speed = [], {}
    for workers, (wall, steady) in timings.items():
        # after the first batch, n - workers slices remain (one batch per worker done)
        speed[workers] = {"wall_s": wall, "slices_per_s": n / wall,
                          "steady_slices_per_s": (n - workers) / steady}
        rows.append({"measure": f"{label}: {n} slices, {workers} worker(s)", "seconds": wall,
                     "slices/s": n / wall, "slices/s after start-up": (n - workers) / steady})
    speed["speedup_2_vs_1"] = speed[2]["slices_per_s"] / speed[1]["slices_per_s"]
    speed["steady_speedup_2_vs_1"] = (speed[2]["steady_slices_per_s"]
                                      / speed[1]["steady_slices_per_s"])
    rows.append({"measure": f"{label}: 2 vs 1 workers speed-up (goal >= 1.8)", "seconds": "",
                 "slices/s": speed["speedup_2_vs_1"],
                 "slices/s after start-up": speed["steady_speedup_2_vs_1"]})
    return rows, speed


def speed_rows(name: str, geometry: ScanGeometry, method: str) -> tuple[list[dict], dict]:
    """Table rows and JSON record of 8 slices with 1 and 2 workers."""
    return speed_table(name, 8, {workers: run(8, workers, geometry, method)
                                 for workers in (1, 2)})


def large(iterations: int) -> None:
    """Issue 18: the default method on a 16-slice 512² volume, 1 vs 2 workers, memory.

    The one-worker runs (4 and 16 slices) run in this process, so their peak RSS is
    the whole run's; the two-worker run's memory is that of its largest worker.
    """
    geometry = ScanGeometry.clinical_fan((512, 512), 0.8, 360)
    params = {"max_iter": iterations, "rtol": 0.0}
    name = f"{DEFAULT_METHOD} ({DEFAULT_PRIOR}) 512², {iterations} iterations"
    timings: dict[int, tuple[float, float]] = {}
    memory = {}
    for n in (4, 16):
        memory[n] = peak_rss_mib(
            lambda n=n: timings.__setitem__(n, run(n, 1, geometry, DEFAULT_METHOD, params)))
    timings[2] = run(16, 2, geometry, DEFAULT_METHOD, params)
    workers_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows, speed = speed_table(name, 16, {1: timings[16], 2: timings[2]})
    for n, mib in memory.items():
        rows.append({"measure": f"one process, {n} slices: peak RSS (MiB)", "seconds": "",
                     "slices/s": "", "slices/s after start-up": f"{mib:.0f}"})
    rows.append({"measure": "largest worker: peak RSS (MiB)", "seconds": "", "slices/s": "",
                 "slices/s after start-up": f"{workers_peak_mib:.0f}"})
    print_table(f"16-slice volume, {geometry.image_shape[0]}² clinical fan, 360 views", rows)
    write_json("bench_volume_512", {"geometry": repr(geometry), "params": params,
                                    "speed": speed, "peak_rss_mib": memory,
                                    "largest_worker_peak_rss_mib": workers_peak_mib,
                                    "memory_16_le_4": memory[16] <= memory[4] * 1.02})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true",
                        help="issue 18's 16-slice 512² volume instead of the default workloads")
    parser.add_argument("--iterations", type=int, default=5,
                        help="iterations a slice with --large")
    args = parser.parse_args()
    if args.large:
        large(args.iterations)
        return
    rows, workloads = [], {}
    for name, (geometry, method) in WORKLOADS.items():
        workload_rows, workloads[name] = speed_rows(name, geometry, method)
        rows += workload_rows
    memory = {n: peak_rss_mib(lambda n=n: run(n, 1, SMALL, "tv")) for n in (8, 64)}
    for n, mib in memory.items():
        rows.append({"measure": f"TV: {n} slices, peak RSS (MiB)", "seconds": "", "slices/s": "",
                     "slices/s after start-up": f"{mib:.0f}"})
    print_table("Whole volumes, clinical fan 180 views, 20 iterations a slice", rows)
    write_json("bench_volume", {
        "geometries": {name: repr(g) for name, (g, _) in WORKLOADS.items()},
        "params": PARAMS, "workloads": workloads,
        "peak_rss_mib": memory, "memory_64_le_8": memory[64] <= memory[8] * 1.02,
    })


if __name__ == "__main__":
    main()
