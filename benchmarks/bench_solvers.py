"""Benchmark the solvers: quality at two doses, iterations to converge, time split.

Held-out random-anatomy phantoms (seeds never used for training or for
choosing defaults), exact line integrals on a clinical curved fan, Poisson
noise at two doses. Every method runs with its defaults: TV's weight follows
the estimated noise with the factor chosen on validation phantoms
(``pipelines/calibrate/tune_tv.py``), the PnP parameters follow the dose rule learned for each
prior and solver (:mod:`ctpnp.train.pnp_parameters`, stored in the model
cards). For each method the table gives PSNR/SSIM in the full and soft-tissue
windows, the iterations and seconds until the PSNR stays within 0.1 dB of its
final value, and the split of an iteration into projector, prior and other
time; a second table gives the mean per dose.

Every method stops by its own rule (relative change; TV's diagonal PDHG at
most 2500 iterations, the count its weight was chosen at); ``--iterations``
caps the PnP methods instead, and TV at 30 times that.

Methods named ``... (old)`` run the configuration before issue 18 on the same
scan in the same run: its solver (PnP: plain CG, unrelaxed,
``LEGACY_SETTINGS``; TV: the balanced step rule, same weight) on its
projector (ODL + astra_cpu); ``... (old solver)`` runs that solver on the
default projector, to separate the two gains. A third table gives, per pair,
the ratio of the seconds to 0.1 dB and the difference of the final PSNR, and
the old run's seconds to 0.1 dB of the new run's final (converged) PSNR:
the old TV steps stop by their rule far from the minimizer, so
``--old-tv-to-cap`` runs them to their iteration cap to see whether they get
there at all.
``--backend odl`` runs the new methods on ODL + astra_cpu too, for context.

Run: ``.venv/bin/python benchmarks/bench_solvers.py [--size 256] [--iterations 20] [--jobs 2]``
(about 10 minutes per scan, one dose of one phantom, at 256² on one core for
all methods; ``--jobs`` scans run in parallel; at ``--size 512`` one scan
takes about an hour for TV and two PnP methods).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import multiprocessing
import time
import warnings
from collections.abc import Callable

import torch
from common import print_table, subset_suffix, write_json

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.evaluation import DOSES, PIXEL_MM, TEST_SEEDS, phantom_scans
from ctpnp.priors import load
from ctpnp.quality import FULL_WINDOW, SOFT_TISSUE_WINDOW, psnr_hu, quality_row
from ctpnp.solvers import pnp_admm, pnp_drs, tv
from ctpnp.solvers.splitting import LEGACY_SETTINGS

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")


class Stopwatch:
    """Accumulates the time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def settled_index(trace, target_db: float) -> int | None:
    """First index of a ``[(s, PSNR), ...]`` trace from which it stays within 0.1 dB
    of ``target_db``; None if it never does."""
    return next((i for i in range(len(trace))
                 if all(abs(p - target_db) <= 0.1 for _, p in trace[i:])), None)


def run(name: str, solve: Callable, y: torch.Tensor, op: Tomography, prior, hu: torch.Tensor
        ) -> dict:
    """One method on one scan: final quality, convergence in PSNR, time split."""
    projector, denoiser = Stopwatch(), Stopwatch()
    backend = op._backend  # instrument the ODL calls, the projector's hot path
    original = backend.forward, backend.adjoint
    backend.forward, backend.adjoint = projector.wrap(original[0]), projector.wrap(original[1])
    original_prox = prior.prox if prior is not None else None
    if prior is not None:
        prior.prox = denoiser.wrap(original_prox)
    trace: list[tuple[float, float]] = []  # (seconds since start, PSNR)
    start = time.perf_counter()

    def callback(_iteration: int, _record: dict, estimate: torch.Tensor) -> None:
        trace.append((time.perf_counter() - start,
                      float(psnr_hu(physics.mu_to_hu(estimate), hu))))

    try:
        result = solve(y, callback)
    finally:
        backend.forward, backend.adjoint = original
        if prior is not None:
            prior.prox = original_prox
    total = time.perf_counter() - start
    image = physics.mu_to_hu(result.x)
    scores = quality_row(image, hu)
    settled = settled_index(trace, scores["psnr_full_db"])
    iterations = max(len(trace), 1)
    return {
        "method": name, **scores,
        "iters to 0.1 dB": settled + 1, "s to 0.1 dB": trace[settled][0],
        "iters": len(trace), "s": total,
        "projector %": 100 * projector.seconds / total,
        "prior %": 100 * denoiser.seconds / total,
        "other %": 100 * (total - projector.seconds - denoiser.seconds) / total,
        "s/iter": total / iterations,
        "diverged": bool(result.diverged.any()),
        "psnr_trace": [[round(t, 3), round(p, 4)] for t, p in trace],
    }


def mean_rows(rows: list[dict]) -> list[dict]:
    """Mean quality and seconds per dose and method."""
    keys = ("psnr_full_db", "psnr_soft_db", "ssim_full", "ssim_soft", "s")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dose"], row["method"]), []).append(row)
    return [{"dose": dose, "method": method,
             **{k: sum(r[k] for r in group) / len(group) for k in keys}}
            for (dose, method), group in groups.items()]


DEFAULT_METHODS = ("TV (PDHG)", "PnP-ADMM LPN", "PnP-DRS LPN", "PnP-ADMM Prox", "PnP-DRS Prox",
                   "PnP-ADMM GMM", "PnP-DRS GMM")
"""Run when ``--methods`` is not given; the others compare configurations."""
OLD_SUFFIXES = (" (old)", " (old solver)")
"""Configurations before issue 18: solver and projector, solver alone."""
METHOD_NAMES = DEFAULT_METHODS + tuple(f"{name}{suffix}" for suffix in OLD_SUFFIXES
                                       for name in ("PnP-ADMM Prox", "PnP-DRS Prox", "TV (PDHG)"))


def pair_rows(rows: list[dict]) -> list[dict]:
    """Per scan, each ``name (old)`` or ``name (old solver)`` row against its ``name`` row:
    time ratio, PSNR change.

    Besides each run's time to 0.1 dB of its own final PSNR, the old run's time to
    0.1 dB of the new run's final PSNR (the converged one: an old run that stops
    early, far from the minimizer, never gets there, and its own ratio means little)."""
    by_key = {(r["dose"], r["seed"], r["method"]): r for r in rows}
    pairs = []
    for (dose, seed, method), old in by_key.items():
        suffix = next((s for s in OLD_SUFFIXES if method.endswith(s)), None)
        new = suffix and by_key.get((dose, seed, method.removesuffix(suffix)))
        if not new:
            continue
        reached = settled_index(old["psnr_trace"], new["psnr_full_db"])
        to_converged = None if reached is None else old["psnr_trace"][reached][0]
        pairs.append({"dose": dose, "seed": seed, "method": new["method"],
                      "against": suffix.strip(" ()"),
                      "s to 0.1 dB new": new["s to 0.1 dB"], "s to 0.1 dB old": old["s to 0.1 dB"],
                      "time ratio new/old": new["s to 0.1 dB"] / old["s to 0.1 dB"],
                      "s old to new's final": to_converged,
                      "ratio to new's final": (None if to_converged is None
                                               else new["s to 0.1 dB"] / to_converged),
                      "s to stop new": new["s"], "s to stop old": old["s"],
                      "stop ratio new/old": new["s"] / old["s"],
                      "psnr new": new["psnr_full_db"], "psnr old": old["psnr_full_db"],
                      "psnr new - old (dB)": new["psnr_full_db"] - old["psnr_full_db"]})
    return pairs


def scan_rows(size: int, views: int, iterations: int | None, names: tuple[str, ...],
              backend: str, old_tv_to_cap: bool, dose: str, seed: int) -> list[dict]:
    """FBP and the iterative methods ``names`` on one held-out scan: the table rows.

    ``old_tv_to_cap`` runs the old TV configurations to their iteration cap instead
    of their relative-change stop."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
    geometry = ScanGeometry.clinical_fan((size, size), PIXEL_MM, views)
    op = Tomography(geometry, backend=backend)
    lpn, prox, gmm = load("lpn"), load("prox"), load("gmm")
    pnp = {} if iterations is None else {"max_iter": iterations}
    pdhg = {} if iterations is None else {"max_iter": 30 * iterations}
    old_pdhg = {**pdhg, "rtol": 0.0} if old_tv_to_cap else pdhg

    def configurations(suffix: str, on: Tomography) -> dict:
        return {
            f"PnP-ADMM Prox{suffix}": (prox, on, lambda y, cb: pnp_admm(
                y, on, prox, callback=cb, **pnp, **LEGACY_SETTINGS)),
            f"PnP-DRS Prox{suffix}": (prox, on, lambda y, cb: pnp_drs(
                y, on, prox, callback=cb, **pnp, **LEGACY_SETTINGS)),
            f"TV (PDHG){suffix}": (None, on, lambda y, cb: tv(
                y, on, steps="balanced", callback=cb, **old_pdhg)),
        }

    old_projector = (Tomography(geometry, backend="odl")
                     if any(n.endswith(" (old)") for n in names) else op)
    methods = {
        "TV (PDHG)": (None, op, lambda y, cb: tv(y, op, callback=cb, **pdhg)),
        "PnP-ADMM LPN": (lpn, op, lambda y, cb: pnp_admm(y, op, lpn, callback=cb, **pnp)),
        "PnP-DRS LPN": (lpn, op, lambda y, cb: pnp_drs(y, op, lpn, callback=cb, **pnp)),
        "PnP-ADMM Prox": (prox, op, lambda y, cb: pnp_admm(y, op, prox, callback=cb, **pnp)),
        "PnP-DRS Prox": (prox, op, lambda y, cb: pnp_drs(y, op, prox, callback=cb, **pnp)),
        "PnP-ADMM GMM": (gmm, op, lambda y, cb: pnp_admm(y, op, gmm, callback=cb, **pnp)),
        "PnP-DRS GMM": (gmm, op, lambda y, cb: pnp_drs(y, op, gmm, callback=cb, **pnp)),
        **configurations(" (old)", old_projector),
        **configurations(" (old solver)", op),
    }
    _, _, y, hu, _ = next(phantom_scans(op, [seed], [DOSES[dose]]))
    start = time.perf_counter()
    fbp = physics.mu_to_hu(op.fbp(y))
    rows = [{"dose": dose, "seed": seed, "method": "FBP (Hann)", **quality_row(fbp, hu),
             "s": time.perf_counter() - start}]
    assert set(methods) == set(METHOD_NAMES)
    for name in names:
        prior, projector, solve = methods[name]
        row = run(name, solve, y, projector, prior, hu)
        rows.append({"dose": dose, "seed": seed, **row})
        print(f"{dose} seed {seed} {name}: {row['psnr_full_db']:.2f} dB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--iterations", type=int, default=None,
                        help="cap the PnP methods (TV at 30x); default: each method's own")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TEST_SEEDS),
                        help="test phantoms (random-anatomy seeds never used for tuning)")
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(DEFAULT_METHODS),
                        help="iterative methods to run (FBP always runs); a subset is written "
                             "to its own JSON file")
    parser.add_argument("--doses", nargs="+", choices=list(DOSES), default=list(DOSES))
    parser.add_argument("--backend", choices=("auto", "matrix", "odl"), default="auto",
                        help="CPU projector (default: the matrix where it fits)")
    parser.add_argument("--old-tv-to-cap", action="store_true",
                        help="run the old TV configurations to their iteration cap (no "
                             "relative-change stop): when, if ever, they reach the converged "
                             "PSNR")
    parser.add_argument("--jobs", type=int, default=1,
                        help="scans reconstructed at once in worker processes (one core each)")
    args = parser.parse_args()
    scans = [(dose, seed) for dose in args.doses for seed in args.seeds]
    task = functools.partial(scan_rows, args.size, args.views, args.iterations,
                             tuple(args.methods), args.backend, args.old_tv_to_cap)
    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            per_scan = list(pool.map(task, *zip(*scans, strict=True)))
    else:
        per_scan = [task(dose, seed) for dose, seed in scans]
    rows = [row for scan in per_scan for row in scan]
    columns = ["dose", "seed", "method", "psnr_full_db", "psnr_soft_db", "ssim_full", "ssim_soft",
               "iters to 0.1 dB", "s to 0.1 dB", "projector %", "prior %", "other %"]
    print_table(f"Solvers on held-out random anatomy, {args.size}² at {PIXEL_MM} mm, "
                f"{args.views} views", [{c: r.get(c, "") for c in columns} for r in rows])
    summary = mean_rows(rows)
    print_table("Mean over the test phantoms", summary)
    pairs = pair_rows(rows)
    for row in rows:  # the traces served the pairs; the JSON keeps the results
        row.pop("psnr_trace", None)
    if pairs:
        print_table("New configuration against the old one, same scans, same run", pairs)
    subset = subset_suffix(args.methods, DEFAULT_METHODS)
    backend = ("" if args.backend == "auto" else f"_{args.backend}") + (
        "_old_tv_to_cap" if args.old_tv_to_cap else "")
    write_json(f"bench_solvers_{args.size}{subset}{backend}", {"summary": summary,
        "pairs": pairs, "methods": args.methods, "backend": args.backend,
        "size": args.size, "pixel_mm": PIXEL_MM, "views": args.views, "doses": DOSES,
        "test_seeds": args.seeds, "jobs": args.jobs, "old_tv_to_cap": args.old_tv_to_cap,
        "pnp_parameters": {name: load(name).card.get("pnp_parameters")
                           for name in ("lpn", "prox", "gmm")},
        "windows_hu": {"full": FULL_WINDOW, "soft": SOFT_TISSUE_WINDOW},
        "rows": rows})


if __name__ == "__main__":
    main()
