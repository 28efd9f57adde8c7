"""Reconstruction quality on real CT slices that no default was chosen on: FBP, TV, PnP.

Real slices of the corpus's validation patient ``lung2`` between and beyond the
two slices the defaults were chosen on (20 and 40), and the GE head slice of
pydicom's test files (``693_J2KI.dcm``; no calibration uses it), each
resampled to the benchmark grid and scanned from a grid twice as fine
(:func:`ctpnp.evaluation.real_ct_scans`), clinical fan, 360 views, Poisson noise
at both doses of :data:`ctpnp.evaluation.DOSES`. Every method runs with its
defaults and its own stopping rule (TV's weight rule chosen on the validation
scans for the converged minimizer; the PnP dose rules from the model cards).

Tables: PSNR / SSIM in the full and the soft-tissue window per scan, the mean
per dose, and per dose the default PnP's margin over TV with the priors
issue's goals (>= 1 dB full window, >= 0.5 dB soft-tissue window, higher
soft-tissue SSIM; the PnP-LPN within 0.5 dB of the default). The figure shows
one slice at the low dose, all methods side by side in the soft-tissue window,
with a zoom.

Run: ``.venv/bin/python benchmarks/bench_real_ct.py [--size 256] [--slices lung2/30 ...]
[--methods fbp tv pnp-admm:gmm pnp-admm:prox pnp-admm:lpn]`` (``ctpnp data fetch lung2`` first;
at 256² about 2 minutes per scan and dose on one core); writes
``benchmarks/results/bench_real_ct_<size>.json`` and ``bench_real_ct_<size>.png``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from common import RESULTS_DIR, default_reconstruction, print_table, subset_suffix, write_json

from ctpnp import ScanGeometry, Tomography
from ctpnp.evaluation import DOSES, PIXEL_MM, real_ct_scans
from ctpnp.figures.panels import side_by_side
from ctpnp.quality import SOFT_TISSUE_WINDOW, quality_row
from ctpnp.registry import DEFAULT_PRIOR

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")

TEST_SLICES = ("lung2/10", "lung2/30", "lung2/50", "693_J2KI.dcm")
"""Real slices no default was chosen on (the rules saw lung2/20, lung2/40 and the
Hitachi head)."""
DEFAULT_PNP, OTHER_PNP = f"pnp-admm:{DEFAULT_PRIOR}", "pnp-admm:lpn"
METHODS = tuple(dict.fromkeys(("fbp", "tv", DEFAULT_PNP, "pnp-admm:prox", OTHER_PNP)))
GOALS_DB = {"full": 1.0, "soft": 0.5, "lpn_within": 0.5}
"""The priors issue's margins of the default PnP over TV, and of the LPN to the default."""
METRICS = ("psnr_full_db", "psnr_soft_db", "ssim_full", "ssim_soft")


def _mean(rows: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def summary(rows: list[dict], methods: list[str]) -> tuple[list[dict], list[dict]]:
    """Per dose: the mean of each method, and the default PnP's margins over TV."""
    means, margins = [], []
    for dose in DOSES:
        at_dose = [r for r in rows if r["dose"] == dose]
        if not at_dose:
            continue
        by_method = {m: [r for r in at_dose if r["method"] == m] for m in methods}
        for method, group in by_method.items():
            means.append({"dose": dose, "method": method, "scans": len(group),
                          **{k: _mean(group, k) for k in (*METRICS, "seconds", "iterations")}})
        if not {DEFAULT_PNP, "tv"} <= set(methods):
            continue
        pnp, tv = (by_method[m] for m in (DEFAULT_PNP, "tv"))
        margin = {"dose": dose,
                  "pnp - tv full (dB)": _mean(pnp, "psnr_full_db") - _mean(tv, "psnr_full_db"),
                  "pnp - tv soft (dB)": _mean(pnp, "psnr_soft_db") - _mean(tv, "psnr_soft_db"),
                  "pnp - tv ssim soft": _mean(pnp, "ssim_soft") - _mean(tv, "ssim_soft")}
        margin["goals met"] = ("yes" if margin["pnp - tv full (dB)"] >= GOALS_DB["full"]
                               and margin["pnp - tv soft (dB)"] >= GOALS_DB["soft"]
                               and margin["pnp - tv ssim soft"] > 0 else "no")
        if OTHER_PNP in methods:
            gap = _mean(pnp, "psnr_full_db") - _mean(by_method[OTHER_PNP], "psnr_full_db")
            margin["default - lpn full (dB)"] = gap
            margin["lpn within 0.5 dB"] = "yes" if gap <= GOALS_DB["lpn_within"] else "no"
        margins.append(margin)
    return means, margins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--slices", nargs="+", default=list(TEST_SLICES))
    parser.add_argument("--photons", type=float, nargs="+", default=list(DOSES.values()))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--figure-slice", default="lung2/30")
    args = parser.parse_args()
    op = Tomography(ScanGeometry.clinical_fan((args.size, args.size), PIXEL_MM, args.views))
    priors: dict = {}
    rows, panels = [], {}
    for dose, name, y, hu, _variance in real_ct_scans(op, args.slices, args.photons):
        shown = name == args.figure_slice and dose == next(iter(DOSES))
        if shown:
            panels["reference"] = hu[0, 0].numpy()
        for method in args.methods:
            start = time.perf_counter()
            image, iterations, stopped = default_reconstruction(method, y, op, priors)
            rows.append({"scan": name, "dose": dose, "method": method,
                         "iterations": iterations, "stopped by rule": stopped,
                         "seconds": time.perf_counter() - start, **quality_row(image, hu)})
            if shown:
                row = rows[-1]
                panels[f"{method}\n{row['psnr_soft_db']:.2f} dB, SSIM {row['ssim_soft']:.3f}"] = (
                    image[0, 0].numpy())
            print(f"{name} {dose} {method}: {rows[-1]['psnr_full_db']:.2f} dB full, "
                  f"{rows[-1]['psnr_soft_db']:.2f} dB soft ({iterations} it)", flush=True)
    means, margins = summary(rows, args.methods)
    title = f"real CT, {args.size}² at {PIXEL_MM} mm, {args.views} views"
    print_table(f"Per scan, {title}", rows)
    print_table("Mean per dose", means)
    if margins:  # needs TV and the default PnP in the run
        print_table("Default PnP against TV (goals: >= 1 dB full, >= 0.5 dB soft, higher SSIM "
                    "soft; LPN within 0.5 dB)", margins)
    name = f"bench_real_ct_{args.size}{subset_suffix(args.methods, METHODS)}"
    write_json(name, {"size": args.size, "views": args.views, "slices": args.slices,
                      "methods": args.methods, "rows": rows, "means": means,
                      "margins": margins})
    if panels:
        side = args.size // 4
        figure = side_by_side(panels, RESULTS_DIR / f"{name}.png", SOFT_TISSUE_WINDOW,
                              f"{args.figure_slice}, {next(iter(DOSES))}, {title}; soft-tissue "
                              f"window [{SOFT_TISSUE_WINDOW.low_hu:g}, "
                              f"{SOFT_TISSUE_WINDOW.high_hu:g}] HU",
                              zoom=(args.size // 2 - side // 2, args.size // 2 - side // 2, side))
        print(f"wrote {figure}")


if __name__ == "__main__":
    main()
