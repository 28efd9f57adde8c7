"""Benchmark: exact phantom projection (rays/s) and anti-aliased rasterisation time.

* rays per second of :meth:`Phantom.project` for a clinical 1152-view x
  736-channel curved fan sinogram, for the FORBILD head and for a random
  anatomical slice (``random_anatomy(0)``);
* seconds to rasterise a 512² grid of 0.7 mm pixels with 4x4 supersampling.

Each timing is the best of ``--repeat`` runs. Prints a table and writes
``benchmarks/results/bench_phantoms.json``. Run: ``python benchmarks/bench_phantoms.py``.
"""

from __future__ import annotations

import argparse
import time

from common import write_json

from ctpnp import ScanGeometry
from ctpnp.phantoms import load, random_anatomy
from ctpnp.scanner.geometry import CLINICAL


def _best_seconds(action, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fan = ScanGeometry("fan", (512, 512), 0.7, CLINICAL.views_per_turn, CLINICAL.n_channels,
                       CLINICAL.channel_spacing_mm, detector="curved",
                       source_isocenter_mm=CLINICAL.source_isocenter_mm,
                       source_detector_mm=CLINICAL.source_detector_mm)
    n_rays = fan.n_views * fan.n_channels
    phantoms = {"forbild": load("forbild"), "random_anatomy(0)": random_anatomy(0)}
    results = {}
    for name, phantom in phantoms.items():
        project_s = _best_seconds(lambda p=phantom: p.project(fan), args.repeat)
        raster_s = _best_seconds(lambda p=phantom: p.rasterize(fan, supersample=4), args.repeat)
        results[name] = {"shapes": len(phantom.shapes), "project_s": project_s,
                         "rays_per_s": n_rays / project_s, "rasterize_512_ss4_s": raster_s}
    print(f"ctpnp.phantoms: {fan.n_views} x {fan.n_channels} curved fan sinogram "
          f"({n_rays} rays), 512x512 raster with 4x4 supersampling")
    print(f"  {'phantom':<20} {'shapes':>6} {'project s':>10} {'Mrays/s':>8} {'raster s':>9}")
    for name, row in results.items():
        print(f"  {name:<20} {row['shapes']:>6} {row['project_s']:>10.2f} "
              f"{row['rays_per_s'] / 1e6:>8.2f} {row['rasterize_512_ss4_s']:>9.2f}")
    write_json("bench_phantoms", {
        "sinogram": {"views": fan.n_views, "channels": fan.n_channels, "detector": "curved"},
        "raster": {"shape": [512, 512], "pixel_mm": 0.7, "supersample": 4},
        "phantoms": results,
    })


if __name__ == "__main__":
    main()
