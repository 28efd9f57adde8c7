"""Benchmark: read a 300-slice 512x512 CT series from DICOM and write it back.

The series is generated with :func:`ctpnp.io.write_ct_series` into a temporary
folder (uncompressed, 16 bit). Prints a table and writes
``benchmarks/results/bench_io.json``. Run: ``python benchmarks/bench_io.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_json

from ctpnp.io import axial_affine, read_ct_series, write_ct_series


def _seconds(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    shape = (args.slices, args.size, args.size)
    hu = np.random.default_rng(0).uniform(-1024, 2000, shape).astype(np.float32)
    affine = axial_affine(shape, (1.0, 0.7, 0.7))
    with tempfile.TemporaryDirectory() as tmp:
        t_generate, _ = _seconds(lambda: write_ct_series(hu, Path(tmp) / "source", affine=affine))
        t_read, series = _seconds(lambda: read_ct_series(Path(tmp) / "source"))
        t_write, _ = _seconds(lambda: write_ct_series(series.hu, Path(tmp) / "back", like=series))
    assert np.abs(series.hu - hu).max() <= 0.5 + 1e-3
    rows = {"write (generate) s": t_generate, "read s": t_read, "write back (like=) s": t_write}
    print(f"ctpnp.io, {shape[0]} slices of {shape[1]}x{shape[2]} (uint16, uncompressed)")
    for name, seconds in rows.items():
        print(f"  {name:<22} {seconds:8.2f}   ({1e3 * seconds / shape[0]:.2f} ms/slice)")
    write_json("bench_io", {
        "shape": list(shape),
        "seconds": {"generate_write": t_generate, "read": t_read, "write_back": t_write},
    })

if __name__ == "__main__":
    main()
