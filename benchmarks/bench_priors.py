"""Denoising quality and prox speed of the priors of ctpnp on held-out generated phantoms.

For each prior and noise level (HU): Gaussian noise is added to mu images of
phantoms never seen in training, the prior's ``prox(x, sigma)`` denoises them,
and PSNR/SSIM (``ctpnp.quality``, full window -1000..2000 HU) are averaged.
Priors with a free strength (TV) get it chosen per noise level on separate
validation phantoms. The prox time is the median over repeats on one
``512 x 512`` slice. Prints a table and writes
``benchmarks/results/bench_priors.json``.

Run: ``.venv/bin/python benchmarks/bench_priors.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ctpnp.physics import MU_WATER_PER_MM, hu_to_mu, mu_to_hu
from ctpnp.priors import TVPrior, load
from ctpnp.quality import psnr_hu, ssim_hu
from ctpnp.train.data import phantom_slices_hu, piecewise_smooth_hu

RESULTS = Path(__file__).with_name("results") / "bench_priors.json"
SIGMAS_HU = (25.0, 50.0, 100.0, 200.0)
TEST_SEEDS = (200_000, 200_001, 200_002, 200_003)
VAL_SEEDS = (300_000, 300_001)
TV_WEIGHTS = tuple(float(w) for w in np.geomspace(2.0, 500.0, 9))


def _tuned_tv(sigma_hu: float, val_mu: torch.Tensor) -> tuple[TVPrior, dict]:
    """TV prior whose weight maximizes validation PSNR at ``sigma_hu``."""
    noisy = _noisy(val_mu, sigma_hu, seed=1)
    sigma = sigma_hu / 1000.0 * MU_WATER_PER_MM
    scores = {w: float(psnr_hu(mu_to_hu(TVPrior(w).prox(noisy, sigma)), mu_to_hu(val_mu)).mean())
              for w in TV_WEIGHTS}
    best = max(scores, key=scores.get)
    return TVPrior(best), {"weight": best, "val_psnr_db": scores[best]}


# One line per prior: name -> (sigma_hu, validation images) -> (prior, notes).
PRIORS: dict[str, Callable[[float, torch.Tensor], tuple[object, dict]]] = {
    "lpn": lambda _s, _v: (load("lpn"), {}),
    "prox": lambda _s, _v: (load("prox"), {}),
    "bm3d": lambda _s, _v: (load("bm3d"), {}),
    "tv": _tuned_tv,
}


def _slices_mu(seeds: tuple[int, ...], size: int, phantoms: str) -> torch.Tensor:
    if phantoms == "anatomy":
        hu = list(phantom_slices_hu(seeds, size))
    else:
        hu = [piecewise_smooth_hu(s, size) for s in seeds]
    return hu_to_mu(torch.as_tensor(np.stack(hu))[:, None])


def _noisy(clean_mu: torch.Tensor, sigma_hu: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return clean_mu + sigma_hu / 1000.0 * MU_WATER_PER_MM * torch.randn(clean_mu.shape, generator=g)


def _prox_seconds(prior, repeats: int) -> float:
    x = hu_to_mu(torch.as_tensor(piecewise_smooth_hu(0, 512))[None, None])
    sigma = 50.0 / 1000.0 * MU_WATER_PER_MM
    prior.prox(x, sigma)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prior.prox(x, sigma)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 px, fewer images (smoke run)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    phantoms = load("lpn").card.get("data", {}).get("phantoms", "piecewise_smooth")
    size = 256 if args.quick else 512
    test_mu = _slices_mu(TEST_SEEDS[: 2 if args.quick else None], size, phantoms)
    val_mu = _slices_mu(VAL_SEEDS, size, phantoms)

    rows = []
    for name, make in PRIORS.items():
        for sigma_hu in SIGMAS_HU:
            prior, notes = make(sigma_hu, val_mu)
            noisy = _noisy(test_mu, sigma_hu, seed=2)
            sigma = sigma_hu / 1000.0 * MU_WATER_PER_MM
            with torch.no_grad():
                out_hu = mu_to_hu(torch.cat([prior.prox(x[None], sigma) for x in noisy]))
            ref_hu = mu_to_hu(test_mu)
            rows.append({
                "prior": name, "sigma_hu": sigma_hu,
                "noisy_psnr_db": float(psnr_hu(mu_to_hu(noisy), ref_hu).mean()),
                "psnr_db": float(psnr_hu(out_hu, ref_hu).mean()),
                "ssim": float(ssim_hu(out_hu, ref_hu).mean()),
                **notes,
            })
        rows[-1]["prox_s_per_512"] = _prox_seconds(prior, repeats=1 if args.quick else 3)

    print(f"{'prior':6s} {'sigma HU':>8s} {'noisy dB':>9s} {'PSNR dB':>8s} {'SSIM':>6s}  notes")
    for r in rows:
        notes = {k: v for k, v in r.items()
                 if k not in ("prior", "sigma_hu", "noisy_psnr_db", "psnr_db", "ssim")}
        print(f"{r['prior']:6s} {r['sigma_hu']:8.0f} {r['noisy_psnr_db']:9.2f} "
              f"{r['psnr_db']:8.2f} {r['ssim']:6.3f}  {notes if notes else ''}")
    result = {
        "benchmark": "bench_priors",
        "phantoms": phantoms, "image_size": size,
        "test_seeds": list(TEST_SEEDS[: len(test_mu)]), "val_seeds": list(VAL_SEEDS),
        "metric_window_hu": [-1000.0, 2000.0],
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "quick": args.quick, "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
