"""Choose TV's default weight on the validation set (never on the test scans).

TV's weight follows the dose as ``weight_mm = c * v`` with ``v`` the noise
variance estimated from the sinogram and ``c`` itself log-linear in ``v``
(:func:`ctpnp.solvers.tv.default_weight_mm`), like the PnP parameters. This
script reconstructs the validation scans (:mod:`ctpnp.evaluation`: the
phantoms and real slices the PnP rules are chosen on by ``tune_pnp.py``, the
geometry and doses of ``benchmarks/bench_solvers.py``) with TV run to
convergence for a grid of ``c`` and reports PSNR/SSIM in both windows; rows of
earlier runs join with ``--also``. The best ``c`` at each dose (mean
full-window PSNR over the scans) fixes the rule's two numbers, never looking at
the test scans; ``--write-rule`` stores them in the file the solver reads
(``ctpnp/solvers/tv_weight.json``).

Each row also records the PSNR at half the iterations
(``psnr_full_db_half_iterations``): where it differs from the final PSNR by more
than 0.1 dB, TV was not converged and the row measures an early stop.

Run: ``.venv/bin/python pipelines/calibrate/tune_tv.py [--seeds 5001] [--real-ct FILE ...]
[--factors-mm 25 50 100 200] [--iterations 300] [--steps balanced] [--also RESULTS.json ...]
[--write-rule]``. The grid of ``c`` runs as one batch per scan: about 0.08 s per value of
``c`` and iteration at 256² on one core (the CPU projector's sparse matrix), so 500
iterations of 7 values take about 5 minutes per scan, 8 on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

import torch

from ctpnp import ScanGeometry, Tomography, evaluation, physics
from ctpnp.quality import psnr_hu, quality_row
from ctpnp.solvers import tv
from ctpnp.solvers.monitor import Callback
from ctpnp.solvers.parameters import REFERENCE_VARIANCE, log_linear_in_variance
from ctpnp.solvers.tv import store_weight_rule

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
RESULTS_DIR = Path(__file__).with_name("results")


def psnr_at(iteration: int, hu: torch.Tensor, into: list[float]) -> Callback:
    """A solver callback that appends the full-window PSNR (dB) of each batch item's
    estimate against ``hu`` ``(1, 1, H, W)`` to ``into`` at ``iteration``."""

    def callback(at: int, _record: dict, estimate: torch.Tensor) -> None:
        if at == iteration:
            into.extend(psnr_hu(physics.mu_to_hu(estimate), hu.expand_as(estimate)).tolist())

    return callback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    evaluation.add_validation_options(parser)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--steps", choices=("balanced", "diagonal"), default="balanced",
                        help="PDHG step rule (ctpnp.solvers.tv.pdhg_steps); recorded, and "
                             "pooled runs must agree on it while TV is not converged")
    parser.add_argument("--factors-mm", type=float, nargs="+", default=[25.0, 50.0, 100.0, 200.0],
                        help="grid of c (mm); extend it until the best c is inside")
    parser.add_argument("--write-rule", action="store_true",
                        help="store the fitted rule where the TV solver reads its default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    op = Tomography(ScanGeometry.clinical_fan((args.size, args.size), evaluation.PIXEL_MM,
                                              args.views))
    rows = []
    factors = torch.tensor(args.factors_mm)
    for dose, seed, y, hu, variance in evaluation.validation_scans(op, args):
        halfway: list[float] = []
        # the whole grid of c in one batch: each item stops on its own
        result = tv(y.expand(len(factors), -1, -1, -1).contiguous(), op,
                    weight_mm=factors * variance, max_iter=args.iterations, steps=args.steps,
                    callback=psnr_at(args.iterations // 2, hu, halfway))
        for i, factor in enumerate(args.factors_mm):
            rows.append({"dose": dose, "seed": seed, "variance": variance, "c (mm)": factor,
                         **quality_row(physics.mu_to_hu(result.x[i:i + 1]), hu),
                         "psnr_full_db_half_iterations": halfway[i] if halfway else None,
                         "iters": int(result.n_iter[i]), "converged": bool(result.converged[i])})
            print(f"{dose} seed {seed} c={factor:g}: {rows[-1]['psnr_full_db']:.2f} dB "
                  f"({rows[-1]['iters']} iterations)", flush=True)
    pool = evaluation.pooled(rows, args.also, size=args.size, views=args.views,
                             iterations=args.iterations, steps=args.steps)
    best = evaluation.best_per_dose(pool, ("c (mm)",))
    print(f"\nTV weight on validation scans, {args.size}² at {evaluation.PIXEL_MM} mm\n")
    print(evaluation.markdown_table(pool))
    print(f"best c per dose: {best}")
    record = {"size": args.size, "pixel_mm": evaluation.PIXEL_MM, "views": args.views,
              "seeds": args.seeds, "real_ct": args.real_ct, "iterations": args.iterations,
              "steps": args.steps, "also": [str(p) for p in args.also], "best": best, "rows": pool}
    if len(best) >= 2:
        log_c, exponent = log_linear_in_variance([b["variance"] for b in best.values()],
                                                 [b["c (mm)"] for b in best.values()])
        print(f"rule: c = {math.exp(log_c):.4g} mm (v / {REFERENCE_VARIANCE:g})^{exponent:.4g}")
        record["rule"] = {"weight_per_noise_variance_mm": math.exp(log_c),
                          "weight_exponent": exponent, "reference_variance": REFERENCE_VARIANCE}
    name = evaluation.results_name(args, "tune_tv", list(best))
    print(f"wrote {evaluation.write_record(RESULTS_DIR / f'{name}.json', record)}")
    if args.write_rule:
        if "rule" not in record:
            raise SystemExit("--write-rule needs both doses (a rule is fitted through two points)")
        print(f"wrote {store_weight_rule(record['rule'], source=f'{name}.json')}")


if __name__ == "__main__":
    main()
