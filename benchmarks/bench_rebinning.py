"""Benchmark: seconds per output slice of helical → fan single-slice rebinning.

A helical scan of 64 rows × 368 curved channels (half the clinical channel
count at twice the pitch), 576 views per turn, 3 turns, pitch 1, float32 data
(smooth values; the rebinning cost does not depend on them). ``--slices``
slices spread over the covered range are rebinned; the time per slice is the
best of ``--repeat`` runs divided by the number of slices. Prints a table and
writes ``benchmarks/results/bench_rebinning.json``.
Run: ``python benchmarks/bench_rebinning.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ctpnp.scanner.acquisition import Acquisition
from ctpnp.scanner.geometry import CLINICAL
from ctpnp.scanner.rebinning import covered_z_range_mm, rebin_helical

RESULTS = Path(__file__).parent / "results" / "bench_rebinning.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slices", type=int, default=16)
    args = parser.parse_args()
    rows, row_mm_at_isocenter, views_per_turn = 64, 0.6, 576
    magnification = CLINICAL.source_detector_mm / CLINICAL.source_isocenter_mm
    scan = Acquisition.uniform(
        n_views=3 * views_per_turn, views_per_turn=views_per_turn, n_rows=rows,
        n_channels=368, channel_spacing_mm=2 * CLINICAL.channel_spacing_mm,
        row_spacing_mm=row_mm_at_isocenter * magnification,
        feed_mm_per_turn=rows * row_mm_at_isocenter)
    shape = (scan.n_views, scan.n_rows, scan.n_channels)
    data = np.sin(np.linspace(0, 40, int(np.prod(shape)), dtype=np.float32)).reshape(shape)
    low, high = covered_z_range_mm(scan)
    z = np.linspace(low, high, args.slices)
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        rebin_helical(data, scan, z)
        best = min(best, time.perf_counter() - start)
    result = {
        "scan": {"views": scan.n_views, "views_per_turn": views_per_turn, "rows": rows,
                 "channels": scan.n_channels, "detector": scan.detector, "pitch": 1.0,
                 "covered_z_mm": [low, high]},
        "slices": args.slices,
        "seconds_per_slice": best / args.slices,
        "repeat": args.repeat,
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
    }
    print(f"ctpnp.scanner.rebinning: helical {scan.n_views} views ({views_per_turn}/turn) x "
          f"{rows} rows x {scan.n_channels} channels, curved, pitch 1")
    print(f"  {'slices':>6} {'total s':>8} {'s/slice':>8}")
    print(f"  {args.slices:>6} {best:>8.3f} {best / args.slices:>8.4f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
