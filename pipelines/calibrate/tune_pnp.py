"""Choose a prior's PnP dose rule on the validation set by a grid (never on the test scans).

For each dose of ``benchmarks/bench_solvers.py`` this reconstructs the validation
scans (:mod:`ctpnp.evaluation`: random-anatomy phantoms, seed 5001 by default, and
real CT slices with ``--real-ct``) with PnP-ADMM for every pair of denoiser
strength ``sigma_hu`` and data scale ``data_weight * v`` of the grid, run as
one batch, and reports PSNR/SSIM in both windows. Rows of earlier runs join
with ``--also``; the pair with the best mean full-window PSNR over the scans
at each dose gives one point of the dose rule
(:func:`ctpnp.solvers.parameters.fit_dose_rule`); with ``--write-card`` the
rule is stored in the model card beside the prior's weights, with the grid
and its results. The rule can also be refined by restarted JFB (``ctpnp tune``).

The same grid measures what a stronger or unconstrained denoiser would give
(never a default): ``bm3d`` (a denoiser, not a prox; PnP-ADMM need not
settle with it, so give ``--iterations``) and ``--unrelaxed`` (a
Prox-denoiser at gamma = 1, the network before its relaxation: not an exact
prox). Neither can write a card.

Every grid point runs until PnP-ADMM's own stopping rule (relative change below
``--rtol``, at most ``--iterations``), so the rule is chosen for the converged
result, not for an early stop; rows record the iterations each point took.
``--relaxation`` sets PnP-ADMM's relaxation for the whole grid and is stored with
the rule, so the solvers run the prior as it was chosen (the over-relaxed default
can cycle with a prior whose potential is far from convex, e.g. the LPN).

Run: ``.venv/bin/python pipelines/calibrate/tune_pnp.py prox [--sigmas-hu 25 50 100]
[--data-scales 0.03 0.1 0.3] [--real-ct FILE ...] [--also RESULTS.json ...]
[--relaxation 1.0] [--write-card] [--unrelaxed]`` (a 9-point grid at 256² takes about 1 s per
iteration on one core with the 1 M-parameter Prox-denoiser; BM3D about 12 s for
4 points).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from ctpnp import ScanGeometry, Tomography, evaluation, physics
from ctpnp.priors import load
from ctpnp.priors.prox_denoiser import ProxDenoiserPrior
from ctpnp.priors.registry import available, shipped_weights
from ctpnp.priors.relaxation import Relaxation
from ctpnp.quality import quality_row
from ctpnp.registry import PRIORS
from ctpnp.solvers import pnp_admm
from ctpnp.solvers.parameters import fit_dose_rule
from ctpnp.solvers.splitting import DEFAULT_RELAXATION
from ctpnp.train.pnp_parameters import store_pnp_parameters

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
RESULTS_DIR = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="shipped prior name or weights path")
    parser.add_argument("--sigmas-hu", type=float, nargs="+", default=[25.0, 50.0, 100.0])
    parser.add_argument("--data-scales", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    evaluation.add_validation_options(parser)
    parser.add_argument("--iterations", type=int, default=200,
                        help="iteration cap; each grid point stops by --rtol first")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="PnP-ADMM's relative-change stopping threshold")
    parser.add_argument("--settled-first", action="store_true",
                        help="choose among the settings that stopped by the rule on every "
                             "scan when there are any (never for an iteration cap)")
    parser.add_argument("--write-card", action="store_true",
                        help="store the fitted rule in the prior's model card (pnp-admm)")
    parser.add_argument("--relaxation", type=float, default=DEFAULT_RELAXATION,
                        help="PnP-ADMM's relaxation alpha in (0, 2); stored with the rule "
                             f"(default {DEFAULT_RELAXATION})")
    parser.add_argument("--unrelaxed", action="store_true",
                        help="a Prox-denoiser at gamma = 1 (not an exact prox; measures what "
                             "the relaxation costs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    code_only = args.prior in PRIORS and not PRIORS[args.prior].learned
    weights = shipped_weights(args.prior) if args.prior in available() else args.prior
    prior = load(args.prior)
    model = args.prior if code_only else prior.card.get("model", "prior")
    if args.unrelaxed:
        if not isinstance(prior, ProxDenoiserPrior):
            parser.error(f"--unrelaxed needs a Prox-denoiser, not {args.prior!r}")
        prior.network.relaxation = Relaxation.constant(1.0)
        model += "_unrelaxed"
    if args.write_card and (code_only or args.unrelaxed):
        parser.error("--write-card stores a rule for a learned prior as shipped: not with "
                     f"{args.prior!r}{' --unrelaxed' if args.unrelaxed else ''}")
    op = Tomography(ScanGeometry.clinical_fan((args.size, args.size), evaluation.PIXEL_MM,
                                              args.views))
    grid = [(s, d) for s in args.sigmas_hu for d in args.data_scales]
    sigma_hu = torch.tensor([s for s, _ in grid])
    data_scale = torch.tensor([d for _, d in grid], dtype=torch.float64)
    rows = []
    for dose, seed, y, hu, variance in evaluation.validation_scans(op, args):
        result = pnp_admm(y.repeat(len(grid), 1, 1, 1), op, prior,
                          sigma_mu_per_mm=physics.hu_difference_to_mu(sigma_hu),
                          data_weight=data_scale / variance, max_iter=args.iterations,
                          rtol=args.rtol, relaxation=args.relaxation)
        images = physics.mu_to_hu(result.x)
        for k, (s, d) in enumerate(grid):
            rows.append({"dose": dose, "seed": seed, "variance": variance, "sigma_hu": s,
                         "data_scale": d, **quality_row(images[k:k + 1], hu),
                         "diverged": bool(result.diverged[k]),
                         "iters": int(result.n_iter[k]), "converged": bool(result.converged[k])})
        print(f"{dose} seed {seed}: done", flush=True)
    # the weights' sha256 names the prior, whatever path it was loaded from
    weights_sha256 = "code" if code_only else prior.card["sha256"]
    if args.unrelaxed:
        weights_sha256 += ":gamma=1"
    pool = evaluation.pooled(rows, args.also, size=args.size, views=args.views,
                             iterations=args.iterations, rtol=args.rtol,
                             relaxation=args.relaxation, weights_sha256=weights_sha256)
    chosen = evaluation.best_per_dose(pool, ("sigma_hu", "data_scale"),
                                      settled_first=args.settled_first)
    print(f"\nPnP-ADMM grid for {args.prior} on validation scans, {args.size}² at "
          f"{evaluation.PIXEL_MM} mm, to rtol {args.rtol:g} (at most {args.iterations} "
          "iterations)\n")
    print(evaluation.markdown_table(pool))
    print(f"chosen per dose: {chosen}")
    record = {"prior": args.prior, "unrelaxed": args.unrelaxed, "size": args.size,
              "pixel_mm": evaluation.PIXEL_MM, "views": args.views,
              "weights_sha256": weights_sha256, "seeds": args.seeds, "real_ct": args.real_ct,
              "iterations": args.iterations, "rtol": args.rtol, "relaxation": args.relaxation,
              "settled_first": args.settled_first, "also": [str(p) for p in args.also],
              "chosen": chosen, "rows": pool}
    name = evaluation.results_name(args, f"tune_pnp_{model}",
                                   list(chosen))
    if len(chosen) < 2:
        print(f"wrote {evaluation.write_record(RESULTS_DIR / f'{name}.json', record)}")
        return
    best = list(chosen.values())
    rule = fit_dose_rule([b["variance"] for b in best], [b["sigma_hu"] for b in best],
                         [b["data_scale"] for b in best])
    print(f"fitted rule: {rule}")
    record["rule"] = rule.to_card()
    print(f"wrote {evaluation.write_record(RESULTS_DIR / f'{name}.json', record)}")
    if args.write_card:
        store_pnp_parameters(weights, "pnp-admm", rule, {"method": "validation grid",
                                                         "solver": "pnp-admm", **record},
                             relaxation=args.relaxation)
        print(f"stored the rule in the model card of {weights}")


if __name__ == "__main__":
    main()
