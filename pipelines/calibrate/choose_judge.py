"""Choose the judge of a prior's quality indicator on the calibration's own failure cases.

The judge is the prior whose denoiser makes the residual and asymmetry maps of
the implausibility (:mod:`ctpnp.quality.indicator`). For ``PRIOR`` this script
reconstructs every case of the ``calibration`` set
(:func:`ctpnp.quality.validation.quality_cases`: the calibration's clean slices
at 10⁴ and 10⁵ photons, and failures built on other calibration slices; never
the benchmark's) with PnP-ADMM and the prior's defaults, and for each candidate
judge computes the maps, fits a calibration on the clean cases
(:func:`ctpnp.quality.fit_calibration`) and scores every region. Per kind
(metal, bubble, lesion, 60 views, 4 × σ, phantom, clean) it reports the region
AUROC for "region RMSE > 50 HU" and the mean over the kinds (those with failed
regions).

The choice: the candidate with the highest mean, when it beats the current judge
(the shipped calibration's, else the prior itself) by at least
:data:`MARGIN_AUROC` and loses no more than :data:`MAX_KIND_LOSS` on any kind;
otherwise the current judge stays. The margins were fixed before the first run.
Writes ``pipelines/calibrate/results/choose_judge_<prior>.json`` and prints the
command that makes the calibration with the chosen judge.

Run: ``.venv/bin/python pipelines/calibrate/choose_judge.py gmm --candidates gmm prox``
(about 25 minutes at 256² on one core for two candidates).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ctpnp import physics
from ctpnp.atomic import staged_file
from ctpnp.priors import load
from ctpnp.priors.registry import fingerprint
from ctpnp.quality import (
    fit_calibration,
    load_calibration,
    quality_maps,
    region_features,
    region_rmse_hu,
    region_scores,
)
from ctpnp.quality import validation as cases
from ctpnp.quality.detection import detection_scores
from ctpnp.versions import package_versions

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")

MARGIN_AUROC = 0.02
"""A new judge must raise the mean region AUROC over the kinds by at least this."""
MAX_KIND_LOSS = 0.05
"""... and lower no kind's region AUROC by more than this."""
RESULTS = Path(__file__).with_name("results")
KINDS = (*cases.FAILURE_KINDS, "clean")


def _current_judge(prior: str) -> str:
    """The judge of the shipped calibration of ``prior``; the prior itself without one."""
    try:
        return load_calibration(prior, fingerprint(prior)).judge
    except ValueError:
        return prior


def choose(means: dict[str, float], per_kind: dict[str, dict[str, float]], current: str
           ) -> str:
    """The chosen judge among the candidates of ``means`` (mean region AUROC) and
    ``per_kind`` (kind -> region AUROC, NaN for a kind without failed regions, which
    counts for no candidate), by the rule of the module docstring."""
    best = max(means, key=means.get)
    if best == current or current not in means:
        return best
    gains = means[best] - means[current]
    worst_loss = np.nanmax([per_kind[current][k] - per_kind[best][k] for k in per_kind[best]])
    return best if gains >= MARGIN_AUROC and worst_loss <= MAX_KIND_LOSS else current


def _region_auroc(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """AUROC of the region scores for failed regions, pooled over ``(z, rmse_hu)`` pairs of
    ``(h, w)`` arrays (:func:`ctpnp.quality.detection.detection_scores`)."""
    return detection_scores(np.concatenate([z.ravel() for z, _ in pairs]),
                            np.concatenate([rmse.ravel() for _, rmse in pairs]))["auroc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="shipped prior whose reconstructions are judged")
    parser.add_argument("--candidates", nargs="+", required=True, help="candidate judges")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = load(args.prior)
    judges = {name: prior if name == args.prior else load(name) for name in args.candidates}
    seen = []  # (kind, photons, x, region RMSE (h, w) HU, {judge: maps})
    for case in cases.quality_cases("calibration", args.size):
        start = time.perf_counter()
        op = cases.operator(args.size, case.views)
        x, _ = cases.reconstruct_case(case, op, prior)
        rmse = region_rmse_hu(physics.mu_to_hu(x), case.reference_hu)[0, 0].numpy()
        maps = {name: quality_maps(x, case.y, op, prior, judge) for name, judge in judges.items()}
        seen.append((case.kind, case.photons, x, rmse, maps))
        print(f"{case.kind:8s} {case.name:14s} {case.photons:.0e}: "
              f"{time.perf_counter() - start:5.1f} s", flush=True)

    per_kind: dict[str, dict[str, float]] = {}
    for name in judges:
        clean = [(f"{photons:g}", float(maps[name].noise_variance[0]),
                  region_features(maps[name], x))
                 for kind, photons, x, _, maps in seen if kind == "clean"]
        calibration = fit_calibration(args.prior, fingerprint(args.prior), clean, {},
                                      judge=(name, fingerprint(name)))
        scored = [(kind, region_scores(maps[name], x, calibration).implausibility[0, 0].numpy(),
                   rmse) for kind, _, x, rmse, maps in seen]
        per_kind[name] = {kind: _region_auroc([(z, rmse) for k, z, rmse in scored if k == kind])
                          for kind in KINDS}
    means = {name: float(np.nanmean(list(values.values()))) for name, values in per_kind.items()}
    current = _current_judge(args.prior)
    chosen = choose(means, per_kind, current)

    print(f"\nregion AUROC of the implausibility of {args.prior}'s reconstructions "
          "(calibration set)")
    print(f"{'judge':10s} " + " ".join(f"{k:>8s}" for k in KINDS) + "     mean")
    for name in judges:
        print(f"{name:10s} " + " ".join(f"{per_kind[name][k]:8.3f}" for k in KINDS)
              + f" {means[name]:8.3f}")
    print(f"current judge {current!r}, chosen {chosen!r} (margin {MARGIN_AUROC}, largest "
          f"loss per kind {MAX_KIND_LOSS}); calibrate with:\n"
          f"  .venv/bin/python pipelines/calibrate/quality.py {args.prior} --judge {chosen}")
    path = RESULTS / f"choose_judge_{args.prior}.json"
    with staged_file(path) as temporary:
        temporary.write_text(json.dumps({
            "prior": args.prior, "size": args.size, "slices": "calibration",
            "region_auroc": per_kind, "mean_region_auroc": means, "current_judge": current,
            "chosen_judge": chosen, "margin_auroc": MARGIN_AUROC,
            "max_kind_loss": MAX_KIND_LOSS,
            "fingerprints": {name: fingerprint(name) for name in {args.prior, *judges}},
            "versions": package_versions()}, indent=1) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
