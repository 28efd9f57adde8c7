"""The validation set the default parameters are chosen on (``tune_pnp.py``, ``tune_tv.py``).

Validation scans are never test scans: random-anatomy phantoms of seeds the
benchmarks do not test on (5001 by default) and real CT slices among
pydicom's test files (:data:`REAL_CT_SLICES`), each at the doses of
``bench_solvers.py``. A tuning run reconstructs some of them for a grid of
settings; its rows can be pooled with those of earlier runs (``--also``), and
for each dose the setting with the best mean full-window PSNR over every scan
it was run on is chosen (:func:`best_per_dose`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import pydicom.data
import torch
import torch.nn.functional as F
from bench_solvers import DOSES, phantom_scans

from ctpnp import Tomography, physics
from ctpnp.io import read_ct_series
from ctpnp.simulation import clean_projection

REAL_CT_SLICES = ("J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm")
"""Real 512² CT slices among pydicom's test files (two heads), used only for
validation; the demo's slice (``CT_small.dcm``) is never among them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The validation-set options of a tuning script."""
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--seeds", type=int, nargs="*", default=[5001],
                        help="validation phantoms (random-anatomy seeds)")
    parser.add_argument("--real-ct", nargs="*", choices=REAL_CT_SLICES, default=[],
                        help="real validation slices (pydicom test files)")
    parser.add_argument("--photons", type=float, nargs="+", default=list(DOSES.values()),
                        help="the doses to run (of bench_solvers' two)")
    parser.add_argument("--also", type=Path, nargs="*", default=[],
                        help="results files of earlier runs (same size and views) whose rows "
                             "join this run's before the choice")
    parser.add_argument("--name", help="results file name, without .json (default: the "
                                       "script's, with the size, and the photons when one "
                                       "dose ran)")


def results_name(args: argparse.Namespace, stem: str, doses: list[str]) -> str:
    """``--name``, else ``stem_SIZE`` with the photons appended when not every dose ran."""
    if args.name:
        return args.name
    name = f"{stem}_{args.size}"
    if len(doses) == len(DOSES):
        return name
    return name + "_" + "_".join(f"{DOSES[d]:g}" for d in doses)


def real_ct_reference_hu(name: str, size: int) -> torch.Tensor:
    """A pydicom test CT slice as ``(1, 1, size, size)`` HU: read by
    :func:`ctpnp.io.read_ct_series`, the scanner's padding outside the field of
    view (−2000 HU or lower) set to air, area-averaged to ``size``²."""
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(pydicom.data.get_testdata_file(name), folder)
        hu = torch.from_numpy(read_ct_series(folder).hu[:1].copy())[None]
    return F.interpolate(hu.clamp_min(-1000.0), size=(size, size), mode="area")


def real_ct_scans(op: Tomography, names: list[str], photons: list[float]):
    """Like :func:`bench_solvers.phantom_scans` for the real slices ``names``
    (of :data:`REAL_CT_SLICES`), yielding the file name in the seed's place.
    Each slice is read once, resampled to ``op``'s grid and scanned as if its
    pixels had ``op``'s size (the heads shrink by 7-16 %), from a grid twice as
    fine (:func:`ctpnp.simulation.clean_projection`), once for all doses; noise
    seed 0."""
    size = op.geometry.image_shape[0]
    for name in names:
        hu = real_ct_reference_hu(name, size)
        clean = clean_projection(hu, op.geometry)
        for dose, count in DOSES.items():
            if count in photons:
                y = physics.simulate_low_dose(clean, count, seed=0)
                yield dose, name, y, hu, float(physics.estimate_noise_variance(y)[0])


def scans(op: Tomography, args: argparse.Namespace):
    """``(dose, seed or file name, y, hu, variance)`` of the run's phantoms,
    then of its real slices (see :func:`bench_solvers.phantom_scans`)."""
    yield from phantom_scans(op, args.seeds, args.photons)
    yield from real_ct_scans(op, args.real_ct, args.photons)


def pooled(rows: list[dict], args: argparse.Namespace, **settings) -> list[dict]:
    """This run's ``rows`` and those of the ``--also`` files, without repeats (a
    results file that pooled others may be pooled again); the files must record
    the same ``size``, ``views`` and ``settings`` (e.g. iterations, the prior's
    weights) as this run, or the run stops naming the file and the field."""
    pool = list(rows)
    expected = {"size": args.size, "views": args.views, **settings}
    for path in args.also:
        record = json.loads(path.read_text())
        for key, value in expected.items():
            if key not in record:
                raise SystemExit(f"{path}: no '{key}' recorded (this run's is {value}); "
                                 "rerun it with the current script")
            if record[key] != value:
                raise SystemExit(f"{path}: {key} is {record[key]}, this run's is {value}")
        if any("variance" not in row for row in record["rows"]):
            raise SystemExit(f"{path}: rows without 'variance' (written by an older script)")
        pool += record["rows"]
    unique = {json.dumps(row, sort_keys=True): row for row in pool}
    return list(unique.values())


def best_per_dose(rows: list[dict], setting: tuple[str, ...]) -> dict[str, dict]:
    """For each dose, the ``setting`` values (row keys) with the best mean
    full-window PSNR over the dose's scans, among the settings run on every one
    of them, with that mean, the mean ``"variance"`` and the scans."""
    best = {}
    for dose in dict.fromkeys(r["dose"] for r in rows):
        dose_rows = [r for r in rows if r["dose"] == dose]
        scans_run = sorted({str(r["seed"]) for r in dose_rows})
        groups: dict[tuple, list[dict]] = {}
        for row in dose_rows:
            groups.setdefault(tuple(row[k] for k in setting), []).append(row)
        complete = {values: group for values, group in groups.items()
                    if sorted({str(r["seed"]) for r in group}) == scans_run}
        if not complete:
            raise SystemExit(f"{dose}: no setting was run on every scan ({scans_run})")
        values, group = max(complete.items(), key=lambda item: mean(item[1], "PSNR full"))
        best[dose] = {**dict(zip(setting, values, strict=True)),
                      "PSNR full": mean(group, "PSNR full"),
                      "variance": mean(group, "variance"), "scans": scans_run}
    return best


def mean(rows: list[dict], key: str) -> float:
    """Mean of ``key`` over ``rows``."""
    return sum(r[key] for r in rows) / len(rows)
