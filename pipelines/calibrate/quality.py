"""Calibrate the quality indicator of a prior on clean validation reconstructions.

Reconstructs the clean cases of the ``calibration`` set
(:func:`ctpnp.quality.validation.quality_cases`: the slices of
:data:`~ctpnp.quality.validation.CALIBRATION_SLICES`, validation patients only, at
10⁴ and 10⁵ photons) with PnP-ADMM and the prior,
computes the prior and data-consistency maps (:mod:`ctpnp.quality.maps`; the
residual and asymmetry by the ``--judge`` prior's denoiser, default the prior's
own) and fits the per-dose region statistics and the flag threshold
(:func:`ctpnp.quality.fit_calibration`). Writes the calibration to
``ctpnp/quality/calibration/<prior>.json``, keyed by the fingerprints of the prior
and the judge, so it must be re-run whenever their weights or cards change, and
when the solver's defaults change (the statistics are those of its reconstructions).
Which judge serves a prior is chosen on the calibration's own failure cases
(``pipelines/calibrate/choose_judge.py``), never on the benchmark's.

Run: ``.venv/bin/python pipelines/calibrate/quality.py PRIOR [--judge PRIOR] [--size
256]`` (about 10 minutes at 256² on one core; shipped: ``prox``, and ``gmm --judge
prox``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings

import torch

from ctpnp import physics
from ctpnp.atomic import staged_file
from ctpnp.priors import load
from ctpnp.priors.registry import fingerprint
from ctpnp.quality import calibration_path, fit_calibration, quality_maps, region_features
from ctpnp.quality import validation as cases
from ctpnp.versions import package_versions

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="shipped prior name")
    parser.add_argument("--judge", help="prior whose denoiser makes the residual and "
                        "asymmetry maps (default: the prior itself)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = load(args.prior)
    judge_name = args.judge or args.prior
    judge = prior if judge_name == args.prior else load(judge_name)
    op = cases.operator(args.size)
    clean, slices = [], []
    calibration_cases = cases.quality_cases("calibration", args.size)
    for case in itertools.takewhile(lambda c: c.kind == "clean", calibration_cases):
        start = time.perf_counter()
        x = cases.reconstruct(case.y, op, prior).x
        maps = quality_maps(x, case.y, op, prior, judge)
        variance = float(maps.noise_variance[0])
        clean.append((f"{case.photons:g}", variance, region_features(maps, x)))
        rmse = float((physics.mu_to_hu(x) - case.reference_hu).pow(2).mean().sqrt())
        patient, index = case.name.split(":")
        slices.append({"patient": patient, "slice": int(index), "photons": case.photons,
                       "noise_variance": variance, "rmse_hu": rmse})
        print(f"{case.name:16s} {case.photons:.0e}: RMSE {rmse:6.1f} HU, "
              f"{time.perf_counter() - start:5.1f} s", flush=True)
    provenance = {"slices": slices, "size": args.size, "views": op.geometry.n_views,
                  "solver": "pnp-admm (prior's defaults and stopping rule)",
                  "versions": package_versions()}
    calibration = fit_calibration(args.prior, fingerprint(args.prior), clean, provenance,
                                  judge=(judge_name, fingerprint(judge_name)))
    path = calibration_path(args.prior)
    path.parent.mkdir(exist_ok=True)
    with staged_file(path) as temporary:
        temporary.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    for dose in calibration.doses:
        print(dose)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
