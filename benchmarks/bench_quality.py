"""How well the calibrated implausibility finds reconstruction failures (issue 17).

Cases are made from validation slices never used for the calibration
(:data:`ctpnp.quality.validation.BENCHMARK_SLICES`: lung2 and head_ge) and
reconstructed with PnP-ADMM and the default prior (the prior's dose rule, run
to PnP-ADMM's own stopping rule), 256² pixels of 0.8 mm, 360 views, 10⁵ photons unless the kind says
otherwise. Failure kinds, on three of the slices each:

* ``metal``: a 3 mm radius insert of μ = 0.5/mm (photon starvation behind it);
* ``bubble``: a 5 mm radius air bubble in soft tissue;
* ``lesion``: a 10 mm radius lesion with a foreign texture (a 2-pixel checkerboard
  of ±200 HU around 60 HU);
* ``views60``: the clean slice scanned with 60 views;
* ``overreg``: the clean slice reconstructed with 4 times the prior's denoiser sigma;
* ``phantom``: random-anatomy phantoms (validation seeds), prior mismatch;

and ``clean``: every benchmark slice (31) at 10⁴ and 10⁵ photons.

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
where a definition is chosen, so that the benchmark's cases stay unseen.

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
from ctpnp.evaluation import DOSES, PIXEL_MM, VALIDATION_SEEDS
from ctpnp.figures.quality import flagged_regions_figure
from ctpnp.phantoms import random_anatomy
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
from ctpnp.simulation import phantom_scan
from ctpnp.solvers.common import pnp_settings

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")

SIZE = 256
FAILURE_PHOTONS = 1e5
SLICE_SETS = {
    "benchmark": {"failure": (("lung2", 15), ("lung2", 45), ("head_ge", 0)),
                  "clean": cases.BENCHMARK_SLICES, "phantoms": (*VALIDATION_SEEDS, 5002)},
    "calibration": {"failure": (("lung2", 14), ("lung2", 44), ("head_hitachi", 0)),
                    "clean": cases.CALIBRATION_SLICES, "phantoms": (5003, 5004)},
}
"""The cases' slices: ``benchmark`` measures the indicator; ``calibration`` (the slices the
statistics are fitted on, other phantoms) is where a change of its definition is chosen."""
KINDS = ("metal", "bubble", "lesion", "views60", "overreg", "phantom")
SCORES = ("implausibility", "residual_z", "asymmetry_z", "data_z", "prior_z", "local_std_hu",
          "equivariant_spread_hu", "residual_asymmetry_prior_z", "residual_prior_z")
METAL_MU_PER_MM, METAL_RADIUS_MM = 0.5, 3.0
BUBBLE_RADIUS_MM, LESION_RADIUS_MM = 5.0, 10.0


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


def _soft_tissue_spot(reference_hu: torch.Tensor, radius_px: float, seed: int
                      ) -> tuple[int, int]:
    """A pixel whose disk of ``radius_px`` is soft tissue (-100..100 HU) throughout."""
    hu = reference_hu[0, 0].numpy()
    r = math.ceil(radius_px)
    window = torch.nn.functional.max_pool2d(
        torch.from_numpy((np.abs(hu) > 100).astype(np.float32))[None, None], 2 * r + 1,
        stride=1, padding=r)[0, 0].numpy()
    rows, cols = np.nonzero(window == 0)
    if rows.size == 0:
        raise ValueError("no soft-tissue spot large enough")
    k = np.random.default_rng(seed).integers(rows.size)
    return int(rows[k]), int(cols[k])


def _disk(shape: tuple[int, ...], center: tuple[int, int], radius_px: float) -> torch.Tensor:
    rows = torch.arange(shape[-2]).reshape(-1, 1) - center[0]
    cols = torch.arange(shape[-1]).reshape(1, -1) - center[1]
    return (rows**2 + cols**2) <= radius_px**2


def _insert(kind: str, reference_hu: torch.Tensor, seed: int) -> torch.Tensor:
    """The reference with the kind's foreign object (``metal``, ``bubble``, ``lesion``)."""
    radius_mm = {"metal": METAL_RADIUS_MM, "bubble": BUBBLE_RADIUS_MM,
                 "lesion": LESION_RADIUS_MM}[kind]
    radius_px = radius_mm / PIXEL_MM
    disk = _disk(reference_hu.shape, _soft_tissue_spot(reference_hu, radius_px, seed), radius_px)
    out = reference_hu.clone()
    if kind == "metal":
        out[..., disk] = float(physics.mu_to_hu(torch.tensor(METAL_MU_PER_MM)))
    elif kind == "bubble":
        out[..., disk] = -1000.0
    else:
        rows, cols = torch.meshgrid(torch.arange(out.shape[-2]), torch.arange(out.shape[-1]),
                                    indexing="ij")
        checker = 200.0 * (1 - 2 * (((rows // 2) + (cols // 2)) % 2)).float()
        out[..., disk] = 60.0 + checker[disk]
    return out


def _case(kind: str, name: str, photons: float, reference_hu: torch.Tensor, y: torch.Tensor,
          op: Tomography, prior, judge, calibration, **settings) -> Case:
    x = cases.reconstruct(y, op, prior, **settings).x
    maps = quality_maps(x, y, op, prior, judge)
    z = region_scores(maps, x, calibration)
    (verdict,) = slice_verdicts(z, calibration)
    hu = physics.mu_to_hu(x)
    inside = torch.isfinite(z.implausibility)
    nan = torch.tensor(math.nan, dtype=torch.float64)
    mean = region_means(hu, calibration.region_px)
    local_std = (region_means(hu**2, calibration.region_px) - mean**2).clamp_min(0).sqrt()
    rmse = region_rmse_hu(hu, reference_hu, calibration.region_px)
    sigma = settings.get("sigma_mu_per_mm")
    if sigma is None:
        sigma, _ = pnp_settings(prior, "pnp-admm", y, None, None)
    spread = region_means(equivariant_spread_hu(prior, x, sigma), calibration.region_px)
    scores = {"implausibility": z.implausibility, "residual_z": z.residual,
              "asymmetry_z": z.asymmetry, "data_z": z.data, "prior_z": z.prior,
              "local_std_hu": torch.where(inside, local_std, nan),
              "equivariant_spread_hu": torch.where(inside, spread, nan),
              # candidate definitions: sums of z-scores (a dose's centring moves no ranking)
              "residual_asymmetry_prior_z": z.residual + z.asymmetry + z.prior,
              "residual_prior_z": z.residual + z.prior}
    return Case(kind, name, photons, torch.where(inside, rmse, nan)[0, 0].numpy(),
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
    clean = [c for c in all_cases if c.kind == "clean" and c.photons == FAILURE_PHOTONS]
    rows = []
    for kind in (*KINDS, "clean"):
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
    parser.add_argument("--slices", choices=list(SLICE_SETS), default="benchmark",
                        help="benchmark: measure the indicator; calibration: the calibration's "
                             "own slices, to choose among candidate definitions")
    args = parser.parse_args()
    failure_slices = SLICE_SETS[args.slices]["failure"]
    clean_slices = tuple((patient, k) for patient, indices
                         in SLICE_SETS[args.slices]["clean"].items() for k in indices)
    prior = load(args.prior)
    calibration = load_calibration(args.prior, fingerprint(args.prior))
    judge = load_judge(calibration, prior)
    op = Tomography(cases.geometry(SIZE))
    op_sparse = Tomography(cases.geometry(SIZE, 60))
    all_cases: list[Case] = []

    def run(kind, name, photons, reference_hu, y, operator=op, **settings):
        start = time.perf_counter()
        case = _case(kind, name, photons, reference_hu, y, operator, prior, judge, calibration,
                     **settings)
        all_cases.append(case)
        print(f"{kind:8s} {name:14s} {photons:.0e}: RMSE "
              f"{float(np.sqrt(np.nanmean(case.region_rmse_hu**2))):6.1f} HU, score "
              f"{np.nanmax(case.implausibility):5.2f}, flagged {case.flagged!s:5s} "
              f"({time.perf_counter() - start:4.1f} s)", flush=True)

    references = {(p, k): cases.corpus_slice_hu(p, k, SIZE) for p, k in clean_slices}
    for (patient, index), reference_hu in references.items():
        for photons in DOSES.values():
            run("clean", f"{patient}:{index}", photons, reference_hu,
                cases.scan(reference_hu, op.geometry, photons, seed=index))
    for number, (patient, index) in enumerate(failure_slices):
        name, reference_hu = f"{patient}:{index}", references[(patient, index)]
        y = cases.scan(reference_hu, op.geometry, FAILURE_PHOTONS, seed=index)
        for kind in ("metal", "bubble", "lesion"):
            altered = _insert(kind, reference_hu, seed=number)
            run(kind, name, FAILURE_PHOTONS, altered,
                cases.scan(altered, op.geometry, FAILURE_PHOTONS, seed=index))
        run("views60", name, FAILURE_PHOTONS, reference_hu,
            cases.scan(reference_hu, op_sparse.geometry, FAILURE_PHOTONS, seed=index),
            operator=op_sparse)
        sigma, _ = pnp_settings(prior, "pnp-admm", y, None, None)
        run("overreg", name, FAILURE_PHOTONS, reference_hu, y, sigma_mu_per_mm=4 * sigma)
    for seed in SLICE_SETS[args.slices]["phantoms"]:
        y, reference_hu = phantom_scan(random_anatomy(seed, fov_mm=PIXEL_MM * SIZE),
                                       op.geometry, FAILURE_PHOTONS, seed)
        run("phantom", f"seed {seed}", FAILURE_PHOTONS, reference_hu, y)

    rows = _rows(all_cases)
    clean_rates = {f"{photons:g}": float(np.mean([c.flagged for c in all_cases
                                                  if c.kind == "clean" and c.photons == photons]))
                   for photons in DOSES.values()}
    cost = _cost(op, prior, judge, cases.scan(references[clean_slices[0]], op.geometry, 1e4))
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
