"""Benchmark the default CPU projector (ASTRA's system matrix) against ODL + ``astra_cpu``.

For clinical curved fan beams (360 views by default) at 256² and 512², times
one forward + adjoint per slice through ``Tomography`` with the default
backend (the system matrix, one and two threads) and with ``backend="odl"``
(ODL + ``astra_cpu``, one slice per ASTRA call), for batches of 1 and 8
slices; the ratio ODL / matrix is the speed-up (goal ≥ 2 at batch 8). Also the
matrix's nonzeros and memory, the time until a fresh operator has its
matrix (built from ASTRA, in a fresh cache folder, then read back from the
disk cache) and the process's peak memory while building. Rounds are
interleaved and medians reported (the machine is shared); the load average
is recorded.

Run: ``.venv/bin/python benchmarks/bench_projector_matrix.py`` (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import warnings

import torch
from common import median_seconds, peak_rss_mib, print_table, write_json

from ctpnp import ScanGeometry, Tomography

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
FIELD_OF_VIEW_MM = 360.0


def forward_adjoint(op: Tomography, images: torch.Tensor, threads: int) -> None:
    torch.set_num_threads(threads)
    with torch.no_grad():
        op.adjoint(op.forward(images))


def first_use_seconds(geometry: ScanGeometry) -> tuple[float, float]:
    """Seconds and peak MiB until a fresh operator has its matrix (built or read from disk)."""
    op = Tomography(geometry, "cpu")
    start = time.perf_counter()
    peak_mib = peak_rss_mib(lambda: op.backend)
    seconds = time.perf_counter() - start
    op = None  # the process keeps a matrix only while an operator holds it
    gc.collect()
    return seconds, peak_mib


def measure(size: int, n_views: int, batches: list[int], repeats: int) -> list[dict]:
    geometry = ScanGeometry.clinical_fan((size, size), FIELD_OF_VIEW_MM / size, n_views)
    build_s, peak_mib = first_use_seconds(geometry)  # ASTRA → matrix → disk cache
    load_s, _ = first_use_seconds(geometry)  # disk cache → memory map
    matrix_op, odl_op = Tomography(geometry, "cpu"), Tomography(geometry, "cpu", backend="odl")
    assert matrix_op.backend == "matrix", "the default CPU backend is not the matrix"
    matrix = matrix_op._backend.matrix
    rows = []
    for batch in batches:
        images = torch.rand((batch, 1, size, size)) * 0.02
        seconds = median_seconds({
            "odl": lambda x=images: forward_adjoint(odl_op, x, 1),
            "matrix 1 thread": lambda x=images: forward_adjoint(matrix_op, x, 1),
            "matrix 2 threads": lambda x=images: forward_adjoint(matrix_op, x, 2),
        }, repeats)
        per_slice = {name: value / batch for name, value in seconds.items()}
        rows.append({
            "grid": f"{size}²", "views": n_views, "batch": batch,
            "ODL s/slice": per_slice["odl"],
            "matrix 1 thr s/slice": per_slice["matrix 1 thread"],
            "matrix 2 thr s/slice": per_slice["matrix 2 threads"],
            "ratio ODL/matrix 1 thr": per_slice["odl"] / per_slice["matrix 1 thread"],
            "ratio ODL/matrix 2 thr": per_slice["odl"] / per_slice["matrix 2 threads"],
            "nnz M": matrix.nnz / 1e6, "matrix MiB": matrix.mib, "build s": build_s,
            "disk-cache load s": load_s, "peak MiB (build)": peak_mib,
        })
    torch.set_num_threads(1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--views", type=int, nargs="+", default=[360])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as cache:  # cold: no matrix from an earlier run
        os.environ["CTPNP_MATRIX_CACHE"] = cache
        rows = [row for size in args.sizes for views in args.views
                for row in measure(size, views, args.batches, args.repeats)]
    load_after = os.getloadavg()
    print_table("Forward + adjoint per slice: system matrix (default CPU path) vs ODL + "
                f"astra_cpu (curved clinical fan, median of {args.repeats} interleaved rounds)",
                rows)
    print(f"\nload average (1, 5, 15 min): before {load_before}, after {load_after}")
    suffix = "" if args.views == [360] else "_" + "_".join(map(str, args.views)) + "_views"
    write_json("bench_projector_matrix" + suffix, {
        "rows": rows, "goal": "ratio ODL/matrix >= 2 at batch 8",
        "load_average_before": load_before, "load_average_after": load_after,
    })


if __name__ == "__main__":
    main()
