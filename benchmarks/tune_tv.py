"""Choose TV's default weight on validation phantoms (never on the test phantoms).

TV's weight follows the dose as ``weight_mm = c * v`` with ``v`` the noise
variance estimated from the sinogram (:data:`ctpnp.solvers.tv.WEIGHT_PER_NOISE_VARIANCE_MM`
is ``c``). This script reconstructs the validation scans (random anatomy,
seeds 5001-5002, the same geometry and doses as ``bench_solvers.py``) with TV
run to convergence for a grid of ``c`` and reports PSNR/SSIM in both
windows; the ``c`` with the best mean full-window PSNR is the default. The
PnP parameters are learned on other seeds (:mod:`ctpnp.train.pnp_parameters`),
so both baselines and our methods are tuned on data the benchmark never uses.

Run: ``.venv/bin/python benchmarks/tune_tv.py [--seeds 5001] [--factors-mm 25 50 100 200]``
(about 4 minutes per reconstruction at 256² on one core).
"""

from __future__ import annotations

import argparse
import warnings

import torch
from bench_solvers import DOSES, PIXEL_MM
from common import print_table, write_json

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.metrics import FULL_WINDOW, SOFT_TISSUE_WINDOW, psnr_hu, ssim_hu
from ctpnp.phantoms import random_anatomy
from ctpnp.simulation import phantom_scan
from ctpnp.solvers import tv

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--seeds", type=int, nargs="+", default=[5001])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--factors-mm", type=float, nargs="+", default=[25.0, 50.0, 100.0, 200.0],
                        help="grid of c (mm); extend it until the best c is inside")
    args = parser.parse_args()
    geometry = ScanGeometry.clinical_fan((args.size, args.size), PIXEL_MM, args.views)
    op = Tomography(geometry)
    rows = []
    for dose, photons in DOSES.items():
        for seed in args.seeds:
            y, hu = phantom_scan(random_anatomy(seed, fov_mm=PIXEL_MM * args.size), geometry,
                                 photons, seed)
            variance = physics.estimate_noise_variance(y)
            for factor in args.factors_mm:
                result = tv(y, op, weight_mm=factor * variance, max_iter=args.iterations)
                image = physics.mu_to_hu(result.x)
                rows.append({"dose": dose, "seed": seed, "c (mm)": factor,
                             "PSNR full": float(psnr_hu(image, hu)),
                             "PSNR soft": float(psnr_hu(image, hu, SOFT_TISSUE_WINDOW)),
                             "SSIM full": float(ssim_hu(image, hu, FULL_WINDOW)),
                             "SSIM soft": float(ssim_hu(image, hu, SOFT_TISSUE_WINDOW)),
                             "iters": int(result.n_iter[0]),
                             "converged": bool(result.converged[0])})
                print(f"{dose} seed {seed} c={factor:g}: {rows[-1]['PSNR full']:.2f} dB",
                      flush=True)
    means = {factor: sum(r["PSNR full"] for r in rows if r["c (mm)"] == factor)
             / sum(r["c (mm)"] == factor for r in rows) for factor in args.factors_mm}
    best = max(means, key=means.get)
    print_table(f"TV weight on validation phantoms, {args.size}² at {PIXEL_MM} mm "
                f"(best c = {best:g} mm)", rows)
    write_json(f"tune_tv_{args.size}", {"size": args.size, "pixel_mm": PIXEL_MM,
                                        "views": args.views, "seeds": args.seeds,
                                        "doses": DOSES, "mean_psnr_full": means,
                                        "best_factor_mm": best, "rows": rows})


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
