"""Denoising quality and prox speed of the priors of ctpnp on images they never trained on.

Two test sets: ``real``, slices of the corpus's validation patients
(:data:`ctpnp.data.SPLITS`: the chest ``lung2`` and two head slices, each at
its own pixel size; ``ctpnp data fetch`` first), and ``phantoms``, held-out
random anatomies (textured, 512² at 0.8 mm). For each prior and noise level
(HU) Gaussian noise is added to the mu images, the prior's ``prox(x, sigma)``
denoises them, and PSNR and SSIM in the full (-1000..2000 HU) and
soft-tissue (-160..240 HU) windows are averaged (``ctpnp.quality``). TV's
weight is chosen per noise level and set on separate validation images of
the same kind (other ``lung2`` slices; other phantom seeds). ``--weights``
adds a candidate Prox-denoiser or LPN weights file as the row ``--label``
(default ``candidate``).
The prox time is the median over repeats on one ``512 x 512`` slice. Prints
a table and writes ``benchmarks/results/bench_priors.json`` (a run of some sets or
priors, with ``--weights`` or ``--quick``, writes ``bench_priors_<what ran>.json``).

Run: ``.venv/bin/python benchmarks/bench_priors.py [--sets real phantoms]
[--priors prox lpn gmm bm3d tv] [--weights FILE [--label NAME]] [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import print_table, subset_suffix, write_json

from ctpnp.data import load_patient
from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu, mu_to_hu
from ctpnp.priors import TVPrior, load
from ctpnp.quality import psnr_hu, quality_row
from ctpnp.train.data import phantom_slices_hu

SIGMAS_HU = (25.0, 50.0, 100.0)
LUNG2_TEST_SLICES = (15, 35, 50)
LUNG2_TV_SLICES = (25, 45)
PHANTOM_TEST_SEEDS = (200_000, 200_001, 200_002, 200_003)
PHANTOM_TV_SEEDS = (300_000, 300_001)
TV_WEIGHTS = tuple(float(w) for w in np.geomspace(2.0, 500.0, 9))
PRIORS = ("lpn", "prox", "gmm", "bm3d", "tv")


def _stack_mu(slices_hu: list[np.ndarray]) -> list[torch.Tensor]:
    """``(1, 1, H, W)`` mu images (sizes may differ between slices)."""
    return [hu_to_mu(torch.as_tensor(np.asarray(s, dtype=np.float32))[None, None])
            for s in slices_hu]


def real_images(quick: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(test, TV-validation) images of the validation patients."""
    lung2 = load_patient("lung2").hu
    heads = [load_patient(p).hu[0] for p in ("head_hitachi", "head_ge")]
    test = [lung2[k] for k in LUNG2_TEST_SLICES[: 1 if quick else None]] + heads
    return _stack_mu(test), _stack_mu([lung2[k] for k in LUNG2_TV_SLICES])


def phantom_images(quick: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(test, TV-validation) images of held-out random anatomies."""
    size = 256 if quick else 512
    test = list(phantom_slices_hu(PHANTOM_TEST_SEEDS[: 2 if quick else None], size))
    return _stack_mu(test), _stack_mu(list(phantom_slices_hu(PHANTOM_TV_SEEDS, size)))


SETS: dict[str, Callable[[bool], tuple[list[torch.Tensor], list[torch.Tensor]]]] = {
    "real": real_images,
    "phantoms": phantom_images,
}


def _sigma_mu(sigma_hu: float) -> float:
    return sigma_hu / 1000.0 * MU_WATER_PER_MM


def _noisy(clean_mu: torch.Tensor, sigma_hu: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return clean_mu + _sigma_mu(sigma_hu) * torch.randn(clean_mu.shape, generator=g)


def _tuned_tv(sigma_hu: float, val_mu: list[torch.Tensor]) -> tuple[TVPrior, dict]:
    """TV prior whose weight maximizes the mean validation PSNR (full window) at ``sigma_hu``."""
    noisy = [_noisy(x, sigma_hu, seed=1) for x in val_mu]

    def score(weight: float) -> float:
        prior = TVPrior(weight)
        return statistics.mean(
            float(psnr_hu(mu_to_hu(prior.prox(n, _sigma_mu(sigma_hu))), mu_to_hu(x)))
            for n, x in zip(noisy, val_mu, strict=True))

    scores = {w: score(w) for w in TV_WEIGHTS}
    best = max(scores, key=scores.get)
    return TVPrior(best), {"tv_weight": best, "tv_val_psnr_db": round(scores[best], 2)}


def _prox_seconds(prior, repeats: int) -> float:
    x = hu_to_mu(torch.zeros(1, 1, 512, 512))
    x[..., 128:384, 128:384] = hu_to_mu(torch.tensor(60.0))
    prior.prox(x, _sigma_mu(50.0))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prior.prox(x, _sigma_mu(50.0))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=PRIORS)
    parser.add_argument("--weights", help="also a candidate weights file (row --label)")
    parser.add_argument("--label", default="candidate", help="the row name of --weights")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller images (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    makers: dict[str, Callable[[float, list[torch.Tensor]], tuple[object, dict]]] = {
        name: (_tuned_tv if name == "tv" else (lambda _s, _v, n=name: (load(n), {})))
        for name in args.priors}
    if args.weights:
        makers[args.label] = lambda _s, _v: (load(args.weights), {})

    rows = []
    for set_name in args.sets:
        test_mu, val_mu = SETS[set_name](args.quick)
        for name, make in makers.items():
            for sigma_hu in SIGMAS_HU:
                prior, notes = make(sigma_hu, val_mu)
                scores = []
                for k, clean in enumerate(test_mu):
                    noisy = _noisy(clean, sigma_hu, seed=2 + k)
                    with torch.no_grad():
                        out = prior.prox(noisy, _sigma_mu(sigma_hu))
                    scores.append({"noisy_psnr_full_db": float(psnr_hu(mu_to_hu(noisy),
                                                                       mu_to_hu(clean))),
                                   **quality_row(mu_to_hu(out), mu_to_hu(clean))})
                mean = {key: round(statistics.mean(s[key] for s in scores), 3)
                        for key in scores[0]}
                rows.append({"set": set_name, "prior": name, "sigma_hu": sigma_hu,
                             "images": len(test_mu), **mean, **notes})
            if set_name == args.sets[0]:
                rows[-1]["prox_s_per_512"] = round(_prox_seconds(prior, 1 if args.quick else 3),
                                                   2)

    shown = ("set", "prior", "sigma_hu", "noisy_psnr_full_db", "psnr_full_db", "psnr_soft_db",
             "ssim_full", "ssim_soft")
    print_table("Denoising, mean over the test images (PSNR dB, SSIM)",
                [{k: r[k] for k in shown} for r in rows])
    # a run of a subset, a candidate or --quick writes its own file, never over the full run's
    chosen = [*args.sets, *args.priors, *([args.label] if args.weights else []),
              *(["quick"] if args.quick else [])]
    write_json("bench_priors" + subset_suffix(chosen, [*SETS, *PRIORS]), {
        "benchmark": "bench_priors", "sets": args.sets, "sigmas_hu": list(SIGMAS_HU),
        "real_test": {"lung2_slices": list(LUNG2_TEST_SLICES),
                      "heads": ["head_hitachi", "head_ge"],
                      "tv_validation_lung2_slices": list(LUNG2_TV_SLICES)},
        "phantom_test_seeds": list(PHANTOM_TEST_SEEDS),
        "phantom_tv_seeds": list(PHANTOM_TV_SEEDS), "weights": args.weights,
        "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
