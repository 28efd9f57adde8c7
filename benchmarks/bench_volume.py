"""Whole volumes: slices per second with 1 vs 2 worker processes, peak memory for 8 vs 64 slices.

TV (20 PDHG iterations) at 128² fan beam: cheap enough to run the volumes, and
dominated by the ASTRA projector like the PnP solvers. Goals (issue 6): two
workers >= 1.8x the slices per second of one; the peak memory of a 64-slice
volume no higher than that of an 8-slice one (the slices stream through).

Run: ``.venv/bin/python benchmarks/bench_volume.py``
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from common import peak_rss_mib, print_table, write_json

from ctpnp import ScanGeometry, physics
from ctpnp.phantoms import load
from ctpnp.volume import reconstruct_volume

GEOMETRY = ScanGeometry.clinical_fan((128, 128), 2.0, 180)
PARAMS = {"max_iter": 20, "rtol": 0.0}


class NoisyScans:
    """A lazy volume: slice ``i`` is the phantom's scan with noise seed ``i``, made on access."""

    def __init__(self, n_slices: int) -> None:
        self.n_slices = n_slices
        self.clean = torch.from_numpy(load("water_inserts").project(GEOMETRY))[None, None]

    def __len__(self) -> int:
        return self.n_slices

    def __getitem__(self, index: int) -> np.ndarray:
        return physics.simulate_low_dose(self.clean, 2e4, seed=index)[0, 0].numpy()


def run(n_slices: int, workers: int) -> tuple[float, float]:
    """(wall seconds with worker start-up, seconds from the first finished slice to the end)."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        reconstruct_volume(NoisyScans(n_slices), GEOMETRY, out_dir, method="tv", params=PARAMS,
                           workers=workers, device="cpu",
                           progress=lambda done, total: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - start
    return wall, stamps[-1] - stamps[1]


def main() -> None:
    rows = []
    speed = {}
    for workers in (1, 2):
        wall, steady = run(8, workers)
        # after the first batch, 8 - workers slices remain (one batch per worker done)
        speed[workers] = {"wall_s": wall, "slices_per_s": 8 / wall,
                          "steady_slices_per_s": (8 - workers) / steady}
        rows.append({"measure": f"8 slices, {workers} worker(s)", "seconds": wall,
                     "slices/s": 8 / wall, "slices/s after start-up": (8 - workers) / steady})
    memory = {n: peak_rss_mib(lambda n=n: run(n, 1)) for n in (8, 64)}
    for n, mib in memory.items():
        rows.append({"measure": f"{n} slices, peak RSS (MiB)", "seconds": "", "slices/s": "",
                     "slices/s after start-up": f"{mib:.0f}"})
    speedup = speed[2]["slices_per_s"] / speed[1]["slices_per_s"]
    steady_speedup = speed[2]["steady_slices_per_s"] / speed[1]["steady_slices_per_s"]
    rows.append({"measure": "2 vs 1 workers speed-up (goal >= 1.8)", "seconds": "",
                 "slices/s": speedup, "slices/s after start-up": steady_speedup})
    print_table("Whole volume: TV (20 it.) at 128², clinical fan 180 views", rows)
    write_json("bench_volume", {
        "geometry": repr(GEOMETRY), "method": "tv", "params": PARAMS,
        "workers": speed, "speedup_2_vs_1": speedup, "steady_speedup_2_vs_1": steady_speedup,
        "peak_rss_mib": memory, "memory_64_le_8": memory[64] <= memory[8] * 1.02,
    })


if __name__ == "__main__":
    main()
