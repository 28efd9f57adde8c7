"""Check that every method's defaults give a converged result, not an early stop.

Each iterative method (FBP has no iterations) reconstructs the test scans with
its defaults, stopping by its own rule (``max_iter`` / ``rtol`` of the solver,
:class:`ctpnp.solvers.StoppingRule`), and again for twice the iterations that run
took, without the relative-change test. A default is converged when the two
agree: the table gives both PSNRs (full and soft-tissue window) and their
difference; ``|Δ| > --tolerance-db`` (0.1 dB) marks the row ``NO``. Parameters
chosen for an early stop show up here as a result that changes (usually falls)
when the method runs longer.

Test scans, never used to choose a default: the random-anatomy phantom 9001
(:data:`ctpnp.evaluation.TEST_SEEDS`, textured) and slice 30 of the
validation patient ``lung2`` (between the two slices the defaults were chosen
on; ``ctpnp data fetch lung2`` first), 256² at 0.8 mm, clinical fan, 360 views,
both doses of :data:`ctpnp.evaluation.DOSES`.

Run: ``.venv/bin/python benchmarks/bench_defaults_converged.py [--methods tv pnp-admm:gmm ...]
[--seeds 9001] [--real-ct lung2/30]``; writes ``benchmarks/results/bench_defaults_converged.json``.
"""

from __future__ import annotations

import argparse
import time
import warnings

from common import default_reconstruction, print_table, write_json

from ctpnp import ScanGeometry, Tomography
from ctpnp.evaluation import DOSES, PIXEL_MM, phantom_scans, real_ct_scans
from ctpnp.quality import quality_row

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")

DEFAULT_METHODS = ("tv", "pnp-admm:gmm", "pnp-drs:gmm", "pnp-admm:prox", "pnp-admm:lpn",
                   "pnp-drs:prox", "pnp-drs:lpn", "pnp-pgd:prox")
"""``method`` or ``method:prior`` (PnP) as checked by default."""


def check(method: str, scan: tuple, op: Tomography, priors: dict, tolerance_db: float) -> dict:
    """One row: ``method``'s default result on ``scan`` against twice its iterations."""
    dose, name, y, hu, _variance = scan
    start = time.perf_counter()
    default_hu, iterations, converged = default_reconstruction(method, y, op, priors)
    seconds = time.perf_counter() - start
    longer_hu, _, _ = default_reconstruction(method, y, op, priors,
                                           max_iter=2 * iterations, rtol=0.0)
    default, longer = quality_row(default_hu, hu), quality_row(longer_hu, hu)
    difference = longer["psnr_full_db"] - default["psnr_full_db"]
    return {"method": method, "scan": str(name), "dose": dose, "iterations": iterations,
            "stopped by rtol": converged, "seconds": seconds,
            "psnr full (dB)": default["psnr_full_db"],
            "psnr full 2x (dB)": longer["psnr_full_db"], "Δ full (dB)": difference,
            "Δ soft (dB)": longer["psnr_soft_db"] - default["psnr_soft_db"],
            "converged": "yes" if abs(difference) <= tolerance_db else "NO"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--seeds", type=int, nargs="*", default=[9001])
    parser.add_argument("--real-ct", nargs="*", default=["lung2/30"])
    parser.add_argument("--photons", type=float, nargs="+", default=list(DOSES.values()))
    parser.add_argument("--tolerance-db", type=float, default=0.1)
    parser.add_argument("--name", default="bench_defaults_converged")
    args = parser.parse_args()
    op = Tomography(ScanGeometry.clinical_fan((args.size, args.size), PIXEL_MM, args.views))
    scans = [*phantom_scans(op, args.seeds, args.photons),
             *real_ct_scans(op, args.real_ct, args.photons)]
    priors: dict = {}
    rows = []
    for scan in scans:
        for method in args.methods:
            rows.append(check(method, scan, op, priors, args.tolerance_db))
            row = rows[-1]
            print(f"{row['method']} {row['scan']} {row['dose']}: {row['iterations']} it, "
                  f"{row['psnr full (dB)']:.2f} -> {row['psnr full 2x (dB)']:.2f} dB", flush=True)
    print_table(f"Defaults against twice their iterations, {args.size}², {args.views} views",
                rows)
    write_json(args.name, {"size": args.size, "views": args.views, "seeds": args.seeds,
                           "real_ct": args.real_ct, "tolerance_db": args.tolerance_db,
                           "rows": rows})


if __name__ == "__main__":
    main()
