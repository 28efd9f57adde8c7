"""Train the learned priors (LPN and Prox-denoiser) with the recipes of the shipped weights.

Each weights file's model card records the full config, the data (corpus
patients with their licences), the device, the step count, the wall time and
the validation history. ``--steps-scale`` shortens every stage proportionally
for a quick try.

* ``LPN_RECIPE``'s schedule made the shipped ``lpn.safetensors`` on phantoms only
  (13 min on an H100); the recipe now adds the corpus's training patients and has
  not been run with them yet (it needs a GPU to finish in hours). On the CPU,
  ``--only lpn`` runs ``LPN_CPU_RECIPE`` instead: the shipped phantom LPN trained
  further on the corpus (8000 steps, 68 min on one core, 2026-12-01): whole-image
  denoising at 50 HU on the validation slices 41.2 dB against 36.3, on real
  validation slices +2.6 to +7.9 dB full window at 25-100 HU but a lower
  soft-tissue SSIM. In PnP-ADMM on the 256² validation grid its best settings read
  35.4 / 40.0 dB at 10^4 / 10^5 photons (the Prox default 38.5 / 41.6) and most
  points did not settle within 60 iterations: not shipped (README, Benchmarks).
* ``PROX_CPU_RECIPE`` trains the Prox-denoiser on real CT (the training
  patients of :data:`ctpnp.data.SPLITS`, fetched with ``ctpnp data fetch``)
  and generated phantoms: a three-scale U-Net (32/64/128 channels, 2 residual
  blocks per scale, space-to-depth by 2, about 1 M parameters) with L2 at a
  cosine-decaying rate, then relaxed per noise level (:mod:`ctpnp.train.relaxation`)
  so that the largest ``||Hess g_sigma||`` on the validation patches is
  ``PROX_RELAX_TARGET`` at each of 8 levels: an exact prox again. 46 minutes
  on one core of two (the shipped weights);
  ``PROX_GPU_RECIPE`` is the same recipe with 10x the steps and twice the batch.
  The Hessian penalty stage (``finetune_steps``) cost 1.7 dB of validation PSNR
  for ``||Hess g|| = 0.98``, and PnP-ADMM with that network often did not settle
  within 100 iterations; the relaxed network converges in 7--60. A penalty phase
  before the relaxation denoises better but left PnP unchanged (README, Benchmarks).
  Measured from the shipped weights and left out (validation PSNR before / after
  relaxation; shipped 38.36 / 34.10 dB): more L2 steps (1 300 at 3e-4: 38.70 /
  33.82, the largest norm 1.45, so gamma falls to 0.58-0.78 at 32-150 HU);
  larger patches at the same pixels a step (96², 14 a step: 38.23 before, at
  the same 1 300 steps); each patch's error weighted by ``(sigma_ref / sigma)^2``
  (2 400 steps: 38.36 / 34.17, the norm up at 22-32 HU); a plain-residual start
  (training ``N = u - R`` directly: 2.3x cheaper a step, but 2 000 such steps
  reach the batch error of about 550 gradient-step ones; the gradient-step
  network's own ``N`` is no denoiser, 14-17 dB).
* ``PROX_PNP_RECIPE`` fine-tunes the shipped Prox-denoiser's weights on PnP-ADMM
  iterates by restarted JFB under its dose rule (:mod:`ctpnp.train.pnp_finetune`),
  then relaxes it again. Measured on the 256² validation scans with the default
  PnP-ADMM (2026-12-01), it does not beat the shipped network once the network is an
  exact prox again: without the Hessian penalty, 100 steps gain +0.02 soft-tissue
  SSIM before the relaxation, but the largest ``||Hess g||`` grows to 1.08 and the
  relaxation (gamma 15-28 % lower at 32-70 HU) takes most of it back (10^4 / 10^5
  photons: +0.07 / -0.09 dB full window, +0.007 / +0.005 SSIM); with the penalty
  (this recipe) the norm stays at 0.87-0.96 and the relaxed network reads -0.04 /
  -0.04 dB, +0.006 / +0.008 SSIM (better on the lung2 slices, worse on the phantom at
  10^4); 200 steps with the penalty read +0.03 / -0.09 dB, +0.009 / +0.009 SSIM.
  Without the penalty, 200-260 steps overfit the training scans (their PSNR +1 dB,
  validation full-window PSNR falling). Scores: ``pipelines/calibrate/compare_weights.py``,
  ``compare_weights_256_jfb_{1e4,1e5}.json``.

* The Gaussian-mixture patch prior (:mod:`ctpnp.train.gmm`) is two mixtures fitted
  apart and joined, half the weight each (``GMM_PHANTOM_SHARE``): ``GMM_RECIPE``, EM on
  250 000 8x8 patches of the training patients and 32 phantoms, 96 components cut to
  rank 16 + isotropic (stopped by its tolerance after 19 iterations, 20 min on one
  core, 2026-12-02), and ``GMM_PHANTOM_RECIPE``, 64 components on 128 textured phantoms
  alone (40 iterations, 12 min on one core, 2026-12-03). Fitted together, phantoms
  crowd out real-CT components (a mixture with three quarters phantom slices lost up to
  0.5 dB on the real validation slices in PnP); side by side, each part keeps what it
  learned. An exact prox by construction, no relaxation (README).

Run: ``.venv/bin/python pipelines/train_priors.py [--device cuda] --out trained
[--only prox|prox-pnp|lpn|gmm]``. Writes ``<out>/lpn.safetensors`` / ``prox.safetensors``
(the relaxed copy of ``prox_l2.safetensors``) / ``gmm.safetensors`` (joined from
``gmm_real`` and ``gmm_phantom``) with their ``.json`` cards; checkpoints beside them
make an interrupted run resume (the same command again). Copy the results over
``ctpnp/priors/weights/`` to ship them, then re-tune the PnP rules
(``pipelines/calibrate/tune_pnp.py``) and the quality calibration
(``pipelines/calibrate/quality.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ctpnp.data import SPLITS
from ctpnp.priors.icnn import ICNNConfig
from ctpnp.priors.registry import shipped_weights
from ctpnp.priors.unet import UNetConfig
from ctpnp.train.gmm import GMMTrainConfig, fit_patch_gmm, join_mixtures
from ctpnp.train.lpn import LPNTrainConfig, Stage, train_lpn
from ctpnp.train.pnp_finetune import PnPFinetuneConfig, finetune_on_pnp
from ctpnp.train.prox_denoiser import ProxTrainConfig, train_prox_denoiser
from ctpnp.train.relaxation import relax_prox_weights

TRAIN_SEEDS = tuple(range(64))  # phantom seeds; validation 1e5.., PnP validation 5001, tests 9001..

PROX_CPU_RECIPE = ProxTrainConfig(
    unet=UNetConfig(channels=(32, 64, 128), blocks=2, unshuffle=2,
                    intensity_offset=0.5, intensity_scale=10.0),
    patch_size=64,
    batch_size=32,
    penalty_batch=8,
    l2_steps=2400,
    l2_lr=1e-3,
    l2_lr_final=5e-5,
    finetune_steps=0,  # no Hessian-penalty stage: relaxation instead (see above)
    finetune_lr=2e-5,  # the stage's settings when it is run (finetune_steps > 0)
    penalty_weight=1e-2,
    check_every=50,
    n_val_patches=64,
    train_seeds=TRAIN_SEEDS[:32],
    real_patients=SPLITS["train"],
    val_patients=SPLITS["validation"],
    jitter_scale=0.05,
    jitter_offset_hu=20.0,
    checkpoint_every=100,
    progress_every=50,
)
"""Real CT + phantoms, about 1 M parameters; 1.1 s per L2 step on one core."""

PROX_GPU_RECIPE = replace(
    PROX_CPU_RECIPE, batch_size=64, l2_steps=24000, checkpoint_every=1000, progress_every=500,
)
"""The CPU recipe with 10x the steps and twice the batch."""

PROX_PNP_RECIPE = PnPFinetuneConfig(
    phantom_seeds=TRAIN_SEEDS[:16],
    real_patients=SPLITS["train"],
    slices_per_patient=16,
    steps=100,
    batch_size=4,
    learning_rate=1e-5,
    hessian_weight=2000.0,
)
"""Fine-tuning on PnP-ADMM iterates: 48 real training slices and 16 phantoms, each scanned
at 10^4 and 10^5 photons (256², 360 views), 100 steps of 4 scans with the Hessian
penalty (12 min on two cores, 5 of them the start, then 16 min of relaxation). Measured, not
shipped: see the module docstring."""

PROX_RELAX_TARGET = 0.9
"""Largest ``||Hess g||`` on the validation patches after relaxation (a margin under 1:
power iteration approaches the norm from below)."""

LPN_RECIPE = LPNTrainConfig(
    icnn=ICNNConfig(channels=64, out_channels=64),
    batch_size=128,
    stages=(
        Stage("l1", 16000, 1e-3),
        Stage("proximal_matching", 8000, 2e-4, 3.2),
        Stage("proximal_matching", 7000, 1e-4, 1.6),
        Stage("proximal_matching", 5000, 5e-5, 0.8),
    ),
    train_seeds=TRAIN_SEEDS,
    real_patients=SPLITS["train"],
    val_patients=SPLITS["validation"],
    jitter_scale=0.05,
    jitter_offset_hu=20.0,
    checkpoint_every=2000,
    progress_every=1000,
)
"""ICNN with 64 channels on 32-pixel patches, L1 then proximal matching (36k steps), on
the corpus's training patients and the phantoms. The shipped LPN was trained with the
same schedule on phantoms only; this corpus version has not been run yet."""


LPN_CPU_RECIPE = replace(
    LPN_RECIPE,
    batch_size=64,
    stages=(
        Stage("l1", 2000, 2e-4),
        Stage("proximal_matching", 2000, 1e-4, 3.2),
        Stage("proximal_matching", 2000, 5e-5, 1.6),
        Stage("proximal_matching", 2000, 2.5e-5, 0.8),
    ),
    checkpoint_every=250,
    progress_every=250,
)
"""The CPU form of ``LPN_RECIPE``: the same data and network, started from an LPN
trained on phantoms (``--from``; by default the shipped weights) rather than from
scratch, 8000 steps of 64 patches at lower rates (about 0.5 s a step on one core: 68 min)."""


GMM_RECIPE = GMMTrainConfig(
    patch_size=8,
    components=96,
    rank=16,
    stride=2,
    n_patches=250_000,
    iterations=40,
    train_seeds=TRAIN_SEEDS[:32],
    real_patients=SPLITS["train"],
    val_patients=SPLITS["validation"],
)
"""The Gaussian-mixture patch prior's first part: 8x8 patches, 96 components cut to rank
16 + isotropic, EM on 250 000 patches of the training patients and phantoms."""

GMM_PHANTOM_RECIPE = replace(GMM_RECIPE, components=64, real_patients=(),
                             train_seeds=tuple(range(128)))
"""Its second part: 64 components fitted on 128 textured phantoms alone (training seeds
are below 100 000), so that phantom texture has components of its own."""

GMM_PHANTOM_SHARE = 0.5
"""The phantom part's share of the joined mixture (:func:`ctpnp.train.gmm.join_mixtures`)."""


def scaled(config: ProxTrainConfig | PnPFinetuneConfig | LPNTrainConfig | GMMTrainConfig,
           factor: float):
    """``config`` with every stage's step count multiplied by ``factor`` (a stage keeps >= 1)."""
    def n(steps: int) -> int:
        return max(1, round(steps * factor)) if steps else 0

    if isinstance(config, ProxTrainConfig):
        return replace(config, l2_steps=n(config.l2_steps),
                       finetune_steps=n(config.finetune_steps))
    if isinstance(config, PnPFinetuneConfig):
        return replace(config, steps=n(config.steps))
    if isinstance(config, GMMTrainConfig):
        return replace(config, iterations=n(config.iterations))
    return replace(config, stages=tuple(replace(s, steps=n(s.steps)) for s in config.stages))


def _printer(model: str):
    start = time.perf_counter()

    def progress(event: dict) -> None:
        values = {k: (f"{v:.4g}" if isinstance(v, float) else v)
                  for k, v in event.items() if k != "event"}
        print(f"[{model} {time.perf_counter() - start:7.1f} s] {event['event']}: {values}",
              flush=True)

    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("trained_priors"),
                        help="folder for the weights, cards and checkpoints")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda[:N]'")
    parser.add_argument("--only", choices=["prox", "prox-pnp", "lpn", "gmm"],
                        help="train one prior only; 'prox-pnp' fine-tunes a Prox-denoiser "
                             "with a dose rule on PnP iterates (run only when asked)")
    parser.add_argument("--from", dest="from_weights", type=Path,
                        help="the weights 'prox-pnp' fine-tunes (default: the shipped "
                             "Prox-denoiser) or the LPN starts from (on the CPU, default: "
                             "the shipped LPN; on a GPU, default: from scratch)")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every stage's steps (e.g. 0.01 for a quick CPU try)")
    args = parser.parse_args(argv)
    if args.steps_scale <= 0:
        parser.error(f"--steps-scale must be positive, got {args.steps_scale}")
    args.out.mkdir(parents=True, exist_ok=True)
    # patch sampling is many tiny CPU ops: more threads only contend (with a GPU, badly)
    torch.set_num_threads(1)
    try:
        if args.only in (None, "prox"):
            recipe = PROX_CPU_RECIPE if args.device == "cpu" else PROX_GPU_RECIPE
            trained = train_prox_denoiser(scaled(recipe, args.steps_scale),
                                          args.out / "prox_l2.safetensors",
                                          progress=_printer("prox"), device=args.device)
            relaxed = relax_prox_weights(trained, args.out / "prox.safetensors",
                                         target_norm=PROX_RELAX_TARGET)
            _printer("prox")({"event": "relaxed", **relaxed})
        if args.only == "prox-pnp":
            tuned = finetune_on_pnp(args.from_weights or shipped_weights("prox"),
                                    args.out / "prox_pnp_unrelaxed.safetensors",
                                    scaled(PROX_PNP_RECIPE, args.steps_scale),
                                    device=args.device, progress=_printer("prox-pnp"))
            relaxed = relax_prox_weights(args.out / "prox_pnp_unrelaxed.safetensors",
                                         args.out / "prox_pnp.safetensors",
                                         target_norm=PROX_RELAX_TARGET)
            _printer("prox-pnp")({"event": "relaxed", "fine_tuned_seconds": tuned["seconds"],
                                  **relaxed})
        if args.only in (None, "gmm"):
            real = fit_patch_gmm(scaled(GMM_RECIPE, args.steps_scale),
                                 args.out / "gmm_real.safetensors", progress=_printer("gmm"),
                                 device=args.device)
            phantom = fit_patch_gmm(scaled(GMM_PHANTOM_RECIPE, args.steps_scale),
                                    args.out / "gmm_phantom.safetensors",
                                    progress=_printer("gmm phantom"), device=args.device)
            join_mixtures([(real, 1 - GMM_PHANTOM_SHARE), (phantom, GMM_PHANTOM_SHARE)],
                          args.out / "gmm.safetensors", GMM_RECIPE)
        if args.only in (None, "lpn"):
            on_cpu = args.device == "cpu"
            recipe = LPN_CPU_RECIPE if on_cpu else LPN_RECIPE
            start = args.from_weights or (shipped_weights("lpn") if on_cpu else None)
            train_lpn(scaled(recipe, args.steps_scale), args.out / "lpn.safetensors",
                      progress=_printer("lpn"), device=args.device, init_from=start)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
