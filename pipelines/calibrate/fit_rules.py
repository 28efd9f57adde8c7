"""Fit TV's weight rule or a prior's PnP dose rule through validation grids of any size.

``tune_tv.py`` and ``tune_pnp.py`` each run a grid of settings on the validation
scans of one grid size (:mod:`ctpnp.evaluation`); this script pools their
results files, of several sizes, and fits the dose rule the solvers read through
all of them, so that one rule serves a 256² head and a 512² body:

1. Every scan of every file is simulated again and its noise variance ``v``
   estimated with the current :func:`ctpnp.physics.estimate_noise_variance`;
   each row's setting is made absolute with the variance it was run at (TV's
   weight ``c v``, PnP's data weight ``scale / v``) and relative again with the
   current one, so files written under an earlier estimator still count.
2. For each (grid size, dose) group, each scan's full-window PSNR is
   interpolated linearly in the log of the relative setting (per denoiser
   strength for PnP) on a common grid inside the range every scan of the group
   covers, and averaged over the scans; the maximum is the group's best
   setting (:func:`ctpnp.evaluation.best_interpolated`; a maximum on the edge of
   the range is reported: extend the grid).
3. The rule (:func:`ctpnp.solvers.parameters.log_linear_in_variance`) is fitted
   by least squares through the groups' best settings at their mean variances.

Run: ``.venv/bin/python pipelines/calibrate/fit_rules.py tv RESULTS.json ... [--write]``
or ``... fit_rules.py pnp PRIOR RESULTS.json ... [--write]`` (PRIOR: a shipped name or
a weights path; every file must record the same weights' sha256). ``--write``
stores the rule where the solvers read it (``ctpnp/solvers/tv_weight.json``, the
prior's model card). Seconds: the scans are simulated, not reconstructed.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ctpnp import ScanGeometry, Tomography, evaluation
from ctpnp.physics import mu_difference_to_hu
from ctpnp.priors.registry import available, shipped_weights
from ctpnp.solvers.parameters import (
    REFERENCE_VARIANCE,
    PnPParameters,
    fit_dose_rule,
    log_linear_in_variance,
)
from ctpnp.solvers.tv import default_weight_mm, store_weight_rule
from ctpnp.train.pnp_parameters import store_pnp_parameters

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
RESULTS_DIR = Path(__file__).with_name("results")


def recorded_relaxation(paths: list[Path]) -> float | None:
    """The PnP-ADMM relaxation the grids ran at (``None``: files that record none ran at
    the solvers' default); ``SystemExit`` naming the values when the files disagree."""
    values = {path: json.loads(path.read_text()).get("relaxation") for path in paths}
    if len(set(values.values())) > 1:
        raise SystemExit("the grids ran at different relaxations: " + ", ".join(
            f"{path}: {value}" for path, value in values.items()))
    return next(iter(values.values()), None)


def current_variances(record: dict) -> dict[tuple[str, str], float]:
    """``(dose, scan) -> v`` of a results file's validation scans under the current
    noise estimator (the scans are simulated again, none reconstructed)."""
    op = Tomography(ScanGeometry.clinical_fan((record["size"], record["size"]),
                                              record["pixel_mm"], record["views"]))
    photons = sorted({evaluation.DOSES[row["dose"]] for row in record["rows"]})
    options = argparse.Namespace(seeds=record["seeds"], real_ct=record["real_ct"],
                                 photons=photons)
    return {(dose, str(seed)): variance
            for dose, seed, _y, _hu, variance in evaluation.validation_scans(op, options)}


def relative_rows(paths: list[Path], kind: str) -> list[dict]:
    """The rows of ``paths`` with ``size``, the current ``variance`` and ``setting``: the
    log of TV's ``c`` or of PnP's data scale under that variance.

    Raises:
        ValueError: a file of another kind, or a row whose scan is not among the file's
            validation scans; the message names the file.
    """
    out, seen = [], set()
    for path in paths:
        record = json.loads(Path(path).read_text())
        key = "c (mm)" if kind == "tv" else "data_scale"
        if any(key not in row for row in record["rows"]):
            raise ValueError(f"{path}: rows without '{key}': not a {kind} grid")
        variances = current_variances(record)
        for row in record["rows"]:
            identity = json.dumps({**row, "size": record["size"]}, sort_keys=True)
            if identity in seen:
                continue  # a file that pooled another holds its rows too
            seen.add(identity)
            scan = (row["dose"], str(row["seed"]))
            if scan not in variances:
                raise ValueError(f"{path}: row of scan {scan} outside the file's scans")
            ratio = variances[scan] / row["variance"]
            # c v and scale / v are what the solver ran with
            relative = row[key] / ratio if kind == "tv" else row[key] * ratio
            out.append({**row, "size": record["size"], "variance": variances[scan],
                        "setting": math.log(relative)})
    return out


def at_rule(best: dict, rule: dict[str, float] | PnPParameters) -> dict:
    """The rule's setting at a group's mean variance and the group's interpolated mean
    PSNR there (for PnP on the curve of the grid strength nearest the rule's), beside
    the group's best; ``outside`` when the rule leaves the range the scans covered.
    ``rule``: TV's (a dict, :func:`ctpnp.solvers.tv.default_weight_mm`) or a PnP rule."""
    variance = np.array([best["variance"]])
    if isinstance(rule, dict):
        weight = float(default_weight_mm(torch.from_numpy(variance), rule)[0])
        strength, setting = None, weight / best["variance"]
    else:
        sigma_mu, data_weight = rule.settings(torch.from_numpy(variance))
        strength = min(best["curves"], key=lambda s: abs(s - mu_difference_to_hu(float(
            sigma_mu[0]))))
        setting = float(data_weight[0]) * best["variance"]
    grid, mean = np.array(best["curves"][strength]).T
    return {"sigma (HU)": strength or "", "setting": setting,
            "psnr at rule (dB)": float(np.interp(math.log(setting), grid, mean)),
            "best (dB)": best["psnr_full_db"],
            "outside": "yes" if not grid[0] <= math.log(setting) <= grid[-1] else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("tv", "pnp"))
    parser.add_argument("inputs", nargs="+",
                        help="for pnp: the prior (shipped name or weights path) first, "
                             "then the results files; for tv: the results files")
    parser.add_argument("--write", action="store_true",
                        help="store the rule where the solvers read it")
    parser.add_argument("--name", help="results file name, without .json")
    parser.add_argument("--settled-first", action="store_true",
                        help="interpolate only the grid points that stopped by the solver's "
                             "rule on their scan, where they leave a choice")
    args = parser.parse_args()
    prior, files = (args.inputs[0], args.inputs[1:]) if args.kind == "pnp" else (
        None, args.inputs)
    paths = [Path(f) for f in files]
    if prior is not None:
        weights = shipped_weights(prior) if prior in available() else Path(prior)
        sha256 = json.loads(weights.with_suffix(".json").read_text())["sha256"]
        for path in paths:
            recorded = json.loads(path.read_text()).get("weights_sha256")
            if recorded != sha256:
                raise SystemExit(f"{path}: weights_sha256 is {recorded}, {prior}'s is {sha256}")
    relaxation = recorded_relaxation(paths) if prior is not None else None
    rows = relative_rows(paths, args.kind)
    groups: dict[tuple[int, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["size"], row["dose"]), []).append(row)
    best = {f"{size} {dose}": evaluation.best_interpolated(group,
                                                           settled_first=args.settled_first)
            for (size, dose), group in groups.items()}
    table = [{"group": name, "v": b["variance"], "sigma (HU)": b["sigma_hu"] or "",
              "setting": b["setting"], "psnr full (dB)": b["psnr_full_db"],
              "edge": "yes" if b["on_edge"] else "", "scans": len(b["scans"])}
             for name, b in best.items()]
    print(evaluation.markdown_table(table))
    variances = [b["variance"] for b in best.values()]
    record = {"kind": args.kind, "prior": prior, "files": [str(p) for p in paths],
              "settled_first": args.settled_first, "relaxation": relaxation,
              "best": {name: {k: v for k, v in b.items() if k != "curves"}
                       for name, b in best.items()}}
    settings = [b["setting"] for b in best.values()]
    if args.kind == "tv":
        log_c, exponent = log_linear_in_variance(variances, settings)
        rule = {"weight_per_noise_variance_mm": math.exp(log_c), "weight_exponent": exponent,
                "reference_variance": REFERENCE_VARIANCE}
        record["rule"] = rule
    else:
        rule = fit_dose_rule(variances, [b["sigma_hu"] for b in best.values()], settings)
        record["rule"] = rule.to_card()
    print(f"rule: {record['rule']}")
    print(evaluation.markdown_table([{"group": name, **at_rule(b, rule)}
                                     for name, b in best.items()]))
    # a weights path names the file by its stem: never a path inside the results folder
    name = args.name or f"fit_rules_{args.kind}" + (f"_{weights.stem}" if prior else "")
    path = evaluation.write_record(RESULTS_DIR / f"{name}.json", record)
    print(f"wrote {path}")
    if args.write and args.kind == "tv":
        print(f"wrote {store_weight_rule(rule, source=path.name)}")
    elif args.write:
        store_pnp_parameters(weights, "pnp-admm", rule, {"method": "validation grids",
                                                         "solver": "pnp-admm", **record},
                             relaxation=relaxation)
        print(f"stored the rule in the model card of {weights}")


if __name__ == "__main__":
    main()
