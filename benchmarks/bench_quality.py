"""How well the calibrated implausibility finds reconstruction failures (issue 17).

Cases are made from validation slices never used for the calibration
(:func:`ctpnp.quality.validation.quality_cases` of the ``benchmark`` set: lung2's odd
slices and head_ge; the failure kinds metal, air bubble, foreign-texture lesion, 60
views, 4 times the denoiser's σ and random-anatomy phantoms, and every slice clean at
10⁴ and 10⁵ photons) and reconstructed with PnP-ADMM and the default prior (the
prior's dose rule, run to PnP-ADMM's own stopping rule), 256² pixels of 0.8 mm, 360
views.

Scores per body region (16² pixels): the implausibility (z), its two parts
alone (the z of the residual and the asymmetry of the calibration's judge,
:func:`ctpnp.quality.load_judge`), and as baselines the
data-consistency z alone, the prior-map z alone, the local standard
deviation of the image (HU) and the spread (HU) of the prior's denoisings of the
reconstruction under the eight flips and quarter turns, at the reconstruction's σ
(:func:`ctpnp.quality.equivariant_spread_hu`), and two candidate definitions: the sums
of the residual, asymmetry and prior-map z-scores and of the residual and prior-map
z-scores. Per kind, over the regions of the kind's scans:
AUROC for "region RMSE > 50 HU" and Spearman's rho between score and region
RMSE; the scan AUROC ranks the kind's scans against the clean 10⁵ scans by their
largest region score; ``flagged`` is the fraction of the kind's scans flagged
(the implausibility's flag, repeated on every row of the kind). Also: the
fraction of clean slices flagged at each dose, and the cost of the maps against
a PnP iteration.

``--slices calibration`` builds the same kinds of cases from the calibration's own slices
(lung2 14 and 44, the Hitachi head, phantoms 5003-5004, the clean calibration slices):
where a definition is chosen (``pipelines/calibrate/choose_judge.py`` chooses the judge
there), so that the benchmark's cases stay unseen.

Run: ``.venv/bin/python benchmarks/bench_quality.py [--prior NAME] [--slices
calibration] [--figure PNG]`` (about 15 minutes on one core). Writes
``benchmarks/results/bench_quality.json`` (``bench_quality_calibration.json`` for the
calibration's slices, ``_<prior>`` appended for another prior than the default).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import print_table, write_json

from ctpnp import physics
from ctpnp.evaluation import DOSES
from ctpnp.figures.quality import flagged_regions_figure
from ctpnp.priors import load
from ctpnp.priors.registry import fingerprint
from ctpnp.projector import Tomography
from ctpnp.quality import (
    equivariant_spread_hu,
    load_calibration,
    load_judge,
    quality_maps,
    region_means,
    region_rmse_hu,
    region_scores,
    slice_verdicts,
)
from ctpnp.quality import validation as cases
from ctpnp.quality.detection import FAILED_RMSE_HU, auroc, detection_scores
from ctpnp.registry import DEFAULT_PRIOR

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")

SIZE = 256
SCORES = ("implausibility", "residual_z", "asymmetry_z", "data_z", "prior_z", "local_std_hu",
          "equivariant_spread_hu", "residual_asymmetry_prior_z", "residual_prior_z")


@dataclass
class Case:
    kind: str
    name: str
    photons: float
    region_rmse_hu: np.ndarray      # (h, w), NaN outside the body
    scores: dict[str, np.ndarray]   # name -> (h, w)
    flagged: bool
    threshold_z: float
    hu: np.ndarray
    implausibility: np.ndarray


def _case(case: cases.QualityCase, op: Tomography, prior, judge, calibration) -> Case:
    y, reference_hu = case.y, case.reference_hu
    x, sigma = cases.reconstruct_case(case, op, prior)
    maps = quality_maps(x, y, op, prior, judge)
    z = region_scores(maps, x, calibration)
    (verdict,) = slice_verdicts(z, calibration)
    hu = physics.mu_to_hu(x)
    inside = torch.isfinite(z.implausibility)
    nan = torch.tensor(math.nan, dtype=torch.float64)
    mean = region_means(hu, calibration.region_px)
    local_std = (region_means(hu**2, calibration.region_px) - mean**2).clamp_min(0).sqrt()
    rmse = region_rmse_hu(hu, reference_hu, calibration.region_px)
    spread = region_means(equivariant_spread_hu(prior, x, sigma), calibration.region_px)
    scores = {"implausibility": z.implausibility, "residual_z": z.residual,
              "asymmetry_z": z.asymmetry, "data_z": z.data, "prior_z": z.prior,
              "local_std_hu": torch.where(inside, local_std, nan),
              "equivariant_spread_hu": torch.where(inside, spread, nan),
              # candidate definitions: sums of z-scores (a dose's centring moves no ranking)
              "residual_asymmetry_prior_z": z.residual + z.asymmetry + z.prior,
              "residual_prior_z": z.residual + z.prior}
    return Case(case.kind, case.name, case.photons, torch.where(inside, rmse, nan)[0, 0].numpy(),
                {k: v[0, 0].numpy() for k, v in scores.items()}, verdict.flagged,
                verdict.threshold_z, hu[0, 0].numpy(), z.implausibility[0, 0].numpy())


def _pooled(group: list[Case], score: str) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([c.scores[score].ravel() for c in group])
    rmse = np.concatenate([c.region_rmse_hu.ravel() for c in group])
    keep = np.isfinite(values) & np.isfinite(rmse)
    return values[keep], rmse[keep]


def _rows(all_cases: list[Case]) -> list[dict]:
    """Per kind (and the clean scans) and score: region AUROC and Spearman within the kind's
    scans, scan AUROC against the clean scans at the failure dose, fraction flagged."""
    clean = [c for c in all_cases if c.kind == "clean" and c.photons == cases.FAILURE_PHOTONS]
    rows = []
    for kind in (*cases.FAILURE_KINDS, "clean"):
        group = [c for c in all_cases if c.kind == kind]
        for score in SCORES:
            detection = detection_scores(*_pooled(group, score))
            scan_auroc = math.nan
            if kind != "clean":
                scan_scores = np.array([np.nanmax(c.scores[score]) for c in group + clean])
                scan_auroc = auroc(scan_scores, np.array([c.kind == kind for c in group + clean]))
            rows.append({"kind": kind, "score": score, "scans": len(group),
                         "failed_regions": detection["failed_regions"],
                         "regions": detection["regions"],
                         "patch_auroc": detection["auroc"],
                         "spearman": detection["spearman"],
                         "scan_auroc": scan_auroc,
                         "flagged": sum(c.flagged for c in group) / len(group)})
    return rows


def _cost(op: Tomography, prior, judge, y: torch.Tensor) -> dict[str, float]:
    """Seconds per PnP-ADMM iteration and for both maps, on one slice."""
    start = time.perf_counter()
    result = cases.reconstruct(y, op, prior)
    x = result.x
    per_iteration = (time.perf_counter() - start) / int(result.n_iter[0])
    start = time.perf_counter()
    quality_maps(x, y, op, prior, judge)
    maps_s = time.perf_counter() - start
    return {"pnp_iteration_s": per_iteration, "maps_s": maps_s,
            "maps_in_iterations": maps_s / per_iteration}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=DEFAULT_PRIOR)
    parser.add_argument("--figure", type=Path,
                        help="PNG of the highest-scoring phantom case (synthetic, so that the "
                             "figure holds no patient image)")
    parser.add_argument("--slices", choices=list(cases.SLICE_SETS), default="benchmark",
                        help="benchmark: measure the indicator; calibration: the calibration's "
                             "own slices, to choose among candidate definitions")
    args = parser.parse_args()
    prior = load(args.prior)
    calibration = load_calibration(args.prior, fingerprint(args.prior))
    judge = load_judge(calibration, prior)
    all_cases: list[Case] = []
    cost_scan = None
    for quality_case in cases.quality_cases(args.slices, SIZE):
        start = time.perf_counter()
        case = _case(quality_case, cases.operator(SIZE, quality_case.views), prior, judge,
                     calibration)
        all_cases.append(case)
        print(f"{case.kind:8s} {case.name:14s} {case.photons:.0e}: RMSE "
              f"{float(np.sqrt(np.nanmean(case.region_rmse_hu**2))):6.1f} HU, score "
              f"{np.nanmax(case.implausibility):5.2f}, flagged {case.flagged!s:5s} "
              f"({time.perf_counter() - start:4.1f} s)", flush=True)
        if cost_scan is None:  # the first case: a clean slice at the lowest dose
            cost_scan = quality_case.y

    rows = _rows(all_cases)
    clean_rates = {f"{photons:g}": float(np.mean([c.flagged for c in all_cases
                                                  if c.kind == "clean" and c.photons == photons]))
                   for photons in DOSES.values()}
    cost = _cost(cases.operator(SIZE), prior, judge, cost_scan)
    print_table(f"Quality indicator, {args.prior} prior, {SIZE}² (regions of "
                f"{calibration.region_px}² px; failed = region RMSE > {FAILED_RMSE_HU:g} HU)",
                rows)
    thresholds = {f"{d.log10_noise_variance:.2f}": d.threshold_z for d in calibration.doses}
    print(f"\nclean slices flagged: {clean_rates} (thresholds z by log10 noise variance: "
          f"{thresholds})")
    print(f"cost: maps {cost['maps_s']:.2f} s = {cost['maps_in_iterations']:.2f} PnP "
          f"iterations ({cost['pnp_iteration_s']:.2f} s each)")
    if args.figure is not None:
        shown = max((c for c in all_cases if c.kind == "phantom"),
                    key=lambda c: np.nanmax(c.implausibility))
        flagged_regions_figure(shown.hu, shown.implausibility, shown.threshold_z,
                               calibration.region_px, args.figure,
                               f"{shown.kind} {shown.name}: implausibility of PnP-ADMM "
                               f"({args.prior})")
    suffix = ("" if args.slices == "benchmark" else f"_{args.slices}") + (
        "" if args.prior == DEFAULT_PRIOR else f"_{args.prior}")
    write_json(f"bench_quality{suffix}", {
        "prior": args.prior, "fingerprint": calibration.fingerprint, "judge": calibration.judge,
        "size": SIZE,
        "slices": args.slices,
        "failed_rmse_hu": FAILED_RMSE_HU,
        "threshold_z_by_log10_variance": thresholds, "rows": rows,
        "clean_flag_rate": clean_rates, "cost": cost,
        "cases": [{"kind": c.kind, "name": c.name, "photons": c.photons, "flagged": c.flagged,
                   "score_z": float(np.nanmax(c.implausibility)), "threshold_z": c.threshold_z}
                  for c in all_cases]})


if __name__ == "__main__":
    main()
