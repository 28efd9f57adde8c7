"""The ``ctpnp`` command: argument parsing, progress and one-line errors only.

Each subcommand is a pair of functions, one adding its arguments and one running
it, and a line of :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path


@contextlib.contextmanager
def _progress_bars() -> Iterator[list]:
    """A list for tqdm bars that progress callbacks open lazily (so an error before the
    first update stays one line), closed however the command ends."""
    bars: list = []
    try:
        yield bars
    finally:
        for bar in bars:
            bar.close()


@contextlib.contextmanager
def _training_bar(description: str) -> Iterator[Callable[[dict], None]]:
    """A progress function for training events (``{"event": "step", "step", "total_steps",
    "loss"}``, ``{"event": "validation", ...}``) drawing one bar, closed at the end."""
    from tqdm import tqdm

    bar = tqdm(unit="step", desc=description, file=sys.stderr)

    def progress(event: dict) -> None:
        bar.total = event.get("total_steps", bar.total)
        if event.get("event") == "step":
            bar.update(event["step"] - bar.n)
            loss = event.get("loss", event.get("mse", float("nan")))
            bar.set_postfix(loss=f"{loss:.4g}")
        elif event.get("event") == "validation":
            bar.write(f"step {event['step']}: validation PSNR "
                      f"{event.get('val_psnr_db', float('nan')):.2f} dB")

    try:
        yield progress
    finally:
        bar.close()


def _info(_: argparse.Namespace) -> int:
    import torch

    from ctpnp.priors.registry import available, shipped_weights
    from ctpnp.priors.weights import card_path as card_path_of
    from ctpnp.projector import cuda_available
    from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR
    from ctpnp.versions import package_versions

    for name, version in package_versions().items():
        print(f"{name:15s} {version}")
    print(f"{'torch CUDA':15s} {'yes' if torch.cuda.is_available() else 'no'}")
    print(f"{'ASTRA CUDA':15s} {'yes (astra_cuda)' if cuda_available() else 'no (astra_cpu, 2D)'}")
    print("shipped priors (model cards beside the weights):")
    for name in available():
        card_path = card_path_of(shipped_weights(name))
        if not card_path.exists():
            print(f"  {name:13s} built from code")
            continue
        card = json.loads(card_path.read_text())
        training = card.get("training", {})
        validation = card.get("validation", {})
        minutes = training.get("total_wall_time_s", training.get("wall_time_s", 0)) / 60
        device = training.get("device", {}).get("name", "the CPU")
        print(f"  {name:13s} {card_path.with_suffix('.safetensors').name}: trained "
              f"{minutes:.0f} min on {device}, validation PSNR "
              f"{validation.get('val_psnr_db', float('nan')):.2f} dB")
    print(f"default {DEFAULT_METHOD} with prior {DEFAULT_PRIOR}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ctpnp.train.device import training_device
    from ctpnp.train.lpn import LPNTrainConfig, train_lpn
    from ctpnp.train.prox_denoiser import ProxTrainConfig, train_prox_denoiser

    if args.model != "lpn" and args.data is not None:
        raise ValueError("--data (extra training slices) is supported for the lpn only")
    if args.model == "lpn" and args.corpus:
        raise ValueError("--corpus (real CT training patients) is supported for the prox "
                         "denoiser and the gmm only; the lpn takes --data")
    if args.model != "prox" and args.keep_best:
        raise ValueError("--keep-best (best check below the Hessian target) is for the prox "
                         "denoiser only")
    if args.model == "gmm" and args.restart:
        raise ValueError("--restart is for the networks; a gmm fit resumes its checkpoint "
                         "(<out>.ckpt.*): remove it to start again")
    training_device(args.device)  # a missing GPU is one line before any progress bar
    extra_slices_hu = ()
    if args.data is not None:
        from ctpnp.io import read_ct_series

        series = int(args.series) if args.series and args.series.isdigit() else args.series
        extra_slices_hu = read_ct_series(args.data, series=series).hu
    out = args.out or Path(f"{args.model}.safetensors")
    corpus = {}
    if args.corpus:
        from ctpnp.data import SPLITS

        corpus = {"real_patients": SPLITS["train"], "val_patients": SPLITS["validation"]}
    with _training_bar(f"training {args.model}") as progress:
        if args.model == "gmm":
            from ctpnp.train.gmm import GMMTrainConfig, fit_patch_gmm

            config = GMMTrainConfig(**corpus)

            def em_progress(event: dict) -> None:  # one bar step per EM pass
                if event["event"] == "em":
                    progress({"event": "step", "step": event["iteration"],
                              "total_steps": config.iterations,
                              "loss": -event["loglik_nats"]})

            fit_patch_gmm(config, out, progress=em_progress, device=args.device)
        elif args.model == "prox":
            train_prox_denoiser(ProxTrainConfig(keep_best=args.keep_best, **corpus), out,
                                progress=progress, resume=not args.restart, device=args.device)
        else:
            train_lpn(LPNTrainConfig(), out, progress=progress, resume=not args.restart,
                      extra_slices_hu=extra_slices_hu, device=args.device)
    print(f"wrote {out} and its model card {out.with_suffix('.json')}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    import shutil

    from ctpnp.priors import load
    from ctpnp.priors.registry import available, shipped_weights
    from ctpnp.priors.weights import card_path
    from ctpnp.solvers.parameters import learned_parameters
    from ctpnp.train.pnp_parameters import (
        PnPTrainConfig,
        learn_pnp_parameters,
        store_pnp_parameters,
    )

    source = shipped_weights(args.prior) if args.prior in available() else Path(args.prior)
    if not source.is_file() or not card_path(source).is_file():
        raise FileNotFoundError(f"{source}: no weights file with a model card beside it")
    if args.out.resolve() == source.resolve():
        raise ValueError(f"--out {args.out}: choose a new file, the source is not modified")
    config = PnPTrainConfig(solver=args.solver, steps=args.steps, image_size=args.size,
                            photons=tuple(args.photons))
    prior = load(source)
    initial = learned_parameters(prior, args.solver)  # refine the card's rule when it has one
    with _training_bar(f"learning {args.solver} parameters") as progress:
        parameters, log = learn_pnp_parameters(prior, config, initial=initial,
                                               progress=progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, args.out)
    shutil.copyfile(card_path(source), card_path(args.out))
    store_pnp_parameters(args.out, config.solver, parameters,
                         {"method": "restarted JFB", **asdict(config),
                          "initial": None if initial is None else asdict(initial), "log": log})
    print(f"wrote {args.out} and its model card with the learned {args.solver} parameters: "
          f"{parameters}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ctpnp.apps.simulate import simulate_series
    from ctpnp.io import read_ct_series

    series = read_ct_series(args.images)
    with _progress_bars() as bars:

        def progress(done: int, total: int, _note: str) -> None:
            if not bars:
                bars.append(tqdm(total=total, unit="slice", desc="simulating", file=sys.stderr))
            bars[0].update(done - bars[0].n)

        folders = simulate_series(series, args.out, photons=args.photons, n_views=args.views,
                                  beam=args.geometry, electronic_noise=args.electronic_noise,
                                  seed=args.seed, progress=progress)
    print(f"wrote {len(folders)} simulated scan(s) of {args.views} views to {args.out}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ctpnp.apps.reconstruct import reconstruct_scan

    with _progress_bars() as bars:

        def progress(done: int, total: int, _note: str) -> None:
            if not bars:
                bars.append(tqdm(total=total, initial=done, unit="slice",
                                 desc="reconstructing", file=sys.stderr))
                if done:
                    bars[0].write(f"resuming: {done} of {total} slices already finished",
                                  file=sys.stderr)
            bars[0].update(done - bars[0].n)

        def on_iteration() -> None:
            if len(bars) == 1:
                bars.append(tqdm(unit="iteration", desc="solver iterations", file=sys.stderr))
            bars[1].update()

        report = reconstruct_scan(
            args.input, args.out, method=args.method, prior=args.prior,
            iterations=args.iterations, grid_like=args.grid_like, size=args.size,
            pixel_mm=args.pixel_mm, device=args.device, workers=args.workers,
            batch_size=args.batch_size, anonymize=args.anonymize,
            orientation_check=args.orientation_check, progress=progress, on_iteration=on_iteration)
    for warning in report.warnings:
        print(f"ctpnp: warning: {warning}", file=sys.stderr)
    if report.diverged:
        print(f"ctpnp: warning: slice(s) {report.diverged} of {report.n_slices} diverged: NaN "
              f"in volume.nii.gz, air in dicom/; see {report.files[-1]}", file=sys.stderr)
    print(f"wrote {report.n_slices} slice(s) to {args.out}: "
          + ", ".join(path.name for path in report.files))
    return 0


def _study(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ctpnp.apps.study import load_config, run_study

    load_config(args.config)  # a malformed configuration fails before any output
    with _progress_bars() as bars:

        def progress(done: int, total: int, description: str) -> None:
            if not bars:
                bars.append(tqdm(total=total, unit="case", desc="study", file=sys.stderr))
            bars[0].set_postfix_str(description[:60])
            bars[0].update(done - bars[0].n)

        report = run_study(args.out, args.config, progress)
    print(f"wrote {report} and the tables and figures beside it")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ctpnp.apps.compare import compare, format_table, write_outputs

    result = compare(args.recon, args.reference)
    print(format_table(result))
    for path in write_outputs(result, args.out):
        print(f"wrote {path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from ctpnp import data

    if args.action == "fetch":
        records = data.fetch(args.patients or None, cache_dir=args.cache,
                             progress=lambda patient, message: print(f"{patient}: {message}",
                                                                     file=sys.stderr))
        for r in records:
            print(f"{r['patient']:13s} {tuple(r['shape'])} {r['pixel_mm']:.3f} mm, "
                  f"HU {r['hu_min']:.0f}..{r['hu_max']:.0f}")
        print(f"cache: {data.cache_folder(args.cache)}")
        return 0
    if args.patients:
        raise ValueError("ctpnp data list takes no patient names")
    print(f"cache: {data.cache_folder(args.cache)}")
    for row in data.list_sources(args.cache):
        state = (f"cached {tuple(row['shape'])}, HU {row['hu_min']:.0f}..{row['hu_max']:.0f}"
                 if row["cached"] else "not fetched")
        print(f"{row['patient']:13s} {row['split']:10s} {row['anatomy']}; {row['package']} "
              f"{row['version']} ({row['registry']}); {row['pixel_mm']} mm; {state}; "
              f"licence: {row['licence']}")
    return 0


def _reconstruct_arguments(parser: argparse.ArgumentParser) -> None:
    from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR, METHODS, PRIORS

    parser.add_argument("input", type=Path,
                        help="a DICOM-CT-PD scan folder, or the slice_NNNN/ folders of simulate")
    parser.add_argument("out", type=Path,
                        help="study folder to create (an interrupted run's is resumed)")
    parser.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD,
                        help=f"reconstruction method (default {DEFAULT_METHOD})")
    parser.add_argument("--prior", default=DEFAULT_PRIOR,
                        help=f"PnP prior: {', '.join(PRIORS)} or a .safetensors file "
                             f"(default {DEFAULT_PRIOR})")
    parser.add_argument("--iterations", type=int, help="maximum iterations per slice "
                                                       "(default: the solver's)")
    parser.add_argument("--grid-like", type=Path, metavar="IMAGES_DIR",
                        help="CT series whose grid (shape, pixels, position) the images take")
    parser.add_argument("--size", type=int, help="pixels per side (default: the largest square "
                                                 "inside the scanned circle)")
    parser.add_argument("--pixel-mm", type=float,
                        help="pixel size in mm (default: a channel's width at the isocentre)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="CPU worker processes")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="slices per solver call (default: 8 on CUDA, 1 on the CPU)")
    parser.add_argument("--anonymize", action="store_true",
                        help="leave patient and study identity out of the DICOM series, with "
                             "a new random PatientID (by default it joins the raw data's "
                             "study)")
    parser.add_argument("--orientation-check", action="store_true",
                        help="check that the images look upright for the patient position "
                             "(flat side of the body on the table); warns when they look "
                             "transposed or upside down")


def _no_arguments(_: argparse.ArgumentParser) -> None:
    """Subcommands without arguments."""


def _train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("model", choices=["lpn", "prox", "gmm"], help="which prior")
    train.add_argument("--out", type=Path,
                       help="weights file to write, model card beside it (default: <model>"
                            ".safetensors); pipelines/train_priors.py has the shipped recipes")
    train.add_argument("--device", default="cpu", help="'cpu' or 'cuda[:N]' (default: cpu)")
    train.add_argument("--data", type=Path, help="folder with a normal-dose CT series to add")
    train.add_argument("--series", help="SeriesInstanceUID or index when --data holds several")
    train.add_argument("--corpus", action="store_true",
                       help="prox and gmm: add the real CT corpus's training patients (and "
                            "its validation patients to the checks); `ctpnp data fetch` first")
    train.add_argument("--restart", action="store_true",
                       help="ignore an existing checkpoint instead of resuming")
    train.add_argument("--keep-best", action="store_true",
                       help="prox only: run every Hessian-penalty step and keep the validation "
                            "check with the best PSNR below the target, not the first one")


def _tune_arguments(tune: argparse.ArgumentParser) -> None:
    from ctpnp.registry import DEFAULT_METHOD, LEARNABLE_METHODS

    tune.add_argument("prior", help="shipped prior name (lpn, prox) or weights file")
    tune.add_argument("out", type=Path,
                      help="weights file to write: a copy of the prior, parameters in its card")
    tune.add_argument("--solver", choices=LEARNABLE_METHODS, default=DEFAULT_METHOD)
    tune.add_argument("--steps", type=int, default=24, help="Adam steps")
    tune.add_argument("--size", type=int, default=256, help="training image size (pixels)")
    tune.add_argument("--photons", type=float, nargs="+", default=[1e4, 1e5],
                      help="doses to learn the rule over (photons per reading)")


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["fetch", "list"],
                        help="fetch: download, verify (sha256) and cache the real CT corpus; "
                             "list: its patients, split, licences and what is cached")
    parser.add_argument("patients", nargs="*",
                        help="patient ids to fetch (default: all; see ctpnp data list)")
    parser.add_argument("--cache", type=Path,
                        help="cache folder (default: $CTPNP_DATA, else ~/.cache/ctpnp/data)")


def _simulate_arguments(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument("images", type=Path, help="folder with a normal-dose CT series")
    simulate.add_argument("out", type=Path, help="folder to create (one sub-folder per slice)")
    simulate.add_argument("--photons", type=float, required=True,
                          help="incident photons per detector reading (I0)")
    simulate.add_argument("--views", type=int, required=True, help="views per full turn")
    simulate.add_argument("--geometry", choices=["fan", "parallel"], default="fan",
                          help="beam; DICOM-CT-PD stores fan beams only")
    simulate.add_argument("--seed", type=int, help="noise seed (slice k uses seed + k)")
    simulate.add_argument("--electronic-noise", type=float, default=0.0,
                          help="readout noise standard deviation (photon counts)")


def _study_arguments(study: argparse.ArgumentParser) -> None:
    study.add_argument("out", type=Path, help="folder for study.md, tables, figures and cases")
    study.add_argument("--config", type=Path,
                       help="study YAML (default: the shipped ctpnp/apps/study/default.yaml)")


def _compare_arguments(comparison: argparse.ArgumentParser) -> None:
    comparison.add_argument("recon", type=Path, nargs="+",
                            help="folders with a CT series or a volume.nii.gz")
    comparison.add_argument("--reference", type=Path, required=True,
                            help="folder with the reference CT series")
    comparison.add_argument("--out", type=Path, default=Path("comparison"),
                            help="folder for metrics.csv, metrics.json and comparison.png")


Arguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

SUBCOMMANDS: dict[str, tuple[str, Arguments, Run]] = {
    "info": ("versions, CUDA availability", _no_arguments, _info),
    "train": ("train a learned prior on generated phantoms (and optional DICOM or the real "
              "CT corpus)",
              _train_arguments, _train),
    "tune": ("learn a prior's PnP parameters (restarted JFB on generated phantoms), starting "
             "from the rule in its model card when it has one", _tune_arguments, _tune),
    "data": ("the real CT corpus for training and validation: fetch it from the package "
             "registries into a cache, list it", _data_arguments, _data),
    "simulate": ("simulate a low-dose scan of a CT series, written as DICOM-CT-PD",
                 _simulate_arguments, _simulate),
    "reconstruct": ("reconstruct a DICOM-CT-PD scan into a DICOM series, NIfTI and a report",
                    _reconstruct_arguments, _reconstruct),
    "study": ("phantom validation study: phantoms x doses x methods, report and figures",
              _study_arguments, _study),
    "compare": ("PSNR, SSIM, RMSE (HU) of reconstructions against a reference series",
                _compare_arguments, _compare),
}
"""Every subcommand: its help line, the function adding its arguments, the one running it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctpnp",
        description="Low-dose CT reconstruction with convergent plug-and-play priors.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (summary, add_arguments, run) in SUBCOMMANDS.items():
        command = commands.add_parser(name, help=summary)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("ctpnp: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users, the traceback with --debug
        if args.debug:
            raise
        print(f"ctpnp: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
