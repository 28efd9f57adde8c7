"""The scans ctpnp is measured and calibrated on, and how a setting is chosen on them.

* Test scans (the solver benchmark): random-anatomy phantoms of :data:`TEST_SEEDS`,
  never used for training or for choosing defaults.
* Validation scans (the calibration of shipped defaults): random-anatomy phantoms of
  :data:`VALIDATION_SEEDS` and real CT slices (:data:`REAL_CT_SLICES`): two heads
  among pydicom's test files (never the demo's slice) and slices of the chest
  ``lung2``, a validation patient of the real-CT corpus (:mod:`ctpnp.data`; no
  prior trains on it).

Every scan is a clinical curved fan on a grid of :data:`PIXEL_MM` pixels, at the
doses of :data:`DOSES`, simulated from exact line integrals (phantoms) or from a
grid twice as fine (real slices), so no reconstruction uses the operator that
made its data. A calibration run reconstructs some validation scans for a grid
of settings (rows); rows of several runs are pooled (:func:`pooled`) and the
best setting per dose is chosen (:func:`best_per_dose`).
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctpnp import physics
from ctpnp.atomic import staged_file
from ctpnp.io import read_pydicom_slice
from ctpnp.phantoms import random_anatomy
from ctpnp.projector import Tomography
from ctpnp.quality import QUALITY_COLUMNS
from ctpnp.simulation import clean_projection, phantom_scan
from ctpnp.versions import package_versions

__all__ = [
    "DOSES",
    "PIXEL_MM",
    "REAL_CT_SLICES",
    "TEST_SEEDS",
    "VALIDATION_SEEDS",
    "add_validation_options",
    "best_interpolated",
    "best_per_dose",
    "markdown_table",
    "phantom_scans",
    "pooled",
    "real_ct_reference_hu",
    "real_ct_scans",
    "results_name",
    "validation_scans",
    "write_record",
]

PIXEL_MM = 0.8
"""The pixel size (mm) the learned priors were trained at."""
DOSES = {"low (1e4 photons)": 1e4, "standard (1e5 photons)": 1e5}
"""Incident photons per reading, by the name used in tables."""
TEST_SEEDS = (9001, 9002)
"""Random-anatomy seeds of the solver benchmark's test phantoms."""
VALIDATION_SEEDS = (5001,)
"""Random-anatomy seeds of the validation phantoms (5002 was added for the LPN)."""
REAL_CT_SLICES = ("J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm", "lung2/20", "lung2/40")
"""Real 512² CT slices used only for validation: two heads among pydicom's test files
(the demo's slice ``CT_small.dcm`` is never among them) and ``patient/index`` slices
of the corpus's validation patient ``lung2`` (``ctpnp data fetch lung2`` first)."""

INTERPOLATION_POINTS = 97
"""Points of the common grid of :func:`best_interpolated`."""
_SAME_SETTING = 1e-9
"""Log settings closer than this are one (noise variances re-estimated in float)."""

Scan = tuple[str, int | str, torch.Tensor, torch.Tensor, float]
"""``(dose name, seed or file name, y (1, 1, views, channels), reference HU (1, 1, H, W),
noise variance the solvers estimate from y)``."""


def phantom_scans(op: Tomography, seeds: list[int] | tuple[int, ...], photons: list[float]
                  ) -> Iterator[Scan]:
    """The scans of random-anatomy phantoms ``seeds`` on ``op``'s geometry, for each dose
    of :data:`DOSES` in ``photons`` (noise seed = phantom seed)."""
    size = op.geometry.image_shape[0]
    for dose, count in DOSES.items():
        if count not in photons:
            continue
        for seed in seeds:
            y, hu = phantom_scan(random_anatomy(seed, fov_mm=PIXEL_MM * size), op.geometry,
                                 count, seed)
            yield dose, seed, y, hu, float(physics.estimate_noise_variance(y)[0])


def real_ct_reference_hu(name: str, size: int) -> torch.Tensor:
    """A real slice of :data:`REAL_CT_SLICES` as ``(1, 1, size, size)`` HU: the scanner's
    padding outside the field of view (−2000 HU or lower) set to air, area-averaged to
    ``size``²."""
    if "/" in name:
        from ctpnp.data import load_patient

        patient, index = name.split("/")
        hu = torch.from_numpy(load_patient(patient).hu[int(index)][None, None].copy())
    else:
        hu = torch.from_numpy(read_pydicom_slice(name).hu[:1].copy())[None]
    return F.interpolate(hu.clamp_min(-1000.0), size=(size, size), mode="area")


def real_ct_scans(op: Tomography, names: list[str], photons: list[float]) -> Iterator[Scan]:
    """Like :func:`phantom_scans` for the real slices ``names`` (of :data:`REAL_CT_SLICES`),
    the file name in the seed's place. Each slice is resampled to ``op``'s grid and
    scanned as if its pixels had ``op``'s size (the heads shrink by 7-16 %), from a grid
    twice as fine (:func:`ctpnp.simulation.clean_projection`); noise seed 0."""
    size = op.geometry.image_shape[0]
    for name in names:
        hu = real_ct_reference_hu(name, size)
        clean = clean_projection(hu, op.geometry)
        for dose, count in DOSES.items():
            if count in photons:
                y = physics.simulate_low_dose(clean, count, seed=0)
                yield dose, name, y, hu, float(physics.estimate_noise_variance(y)[0])


def validation_scans(op: Tomography, options: argparse.Namespace) -> Iterator[Scan]:
    """The validation scans a calibration run chose (:func:`add_validation_options`):
    its phantoms, then its real slices."""
    yield from phantom_scans(op, options.seeds, options.photons)
    yield from real_ct_scans(op, options.real_ct, options.photons)


def add_validation_options(parser: argparse.ArgumentParser) -> None:
    """The options of a calibration script that choose its validation scans and records."""
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(VALIDATION_SEEDS),
                        help="validation phantoms (random-anatomy seeds)")
    parser.add_argument("--real-ct", nargs="*", choices=REAL_CT_SLICES, default=[],
                        help="real validation slices (pydicom test files)")
    parser.add_argument("--photons", type=float, nargs="*", default=list(DOSES.values()),
                        help="the doses to run (of the benchmark's two); none: choose from "
                             "the --also files alone")
    parser.add_argument("--also", type=Path, nargs="*", default=[],
                        help="results files of earlier runs (same size and views) whose rows "
                             "join this run's before the choice")
    parser.add_argument("--name", help="results file name, without .json (default: the "
                                       "script's, with the size, and the photons when one "
                                       "dose ran)")


def results_name(options: argparse.Namespace, stem: str, doses: list[str]) -> str:
    """``--name``, else ``stem_SIZE`` with the photons appended when not every dose ran."""
    if options.name:
        return options.name
    name = f"{stem}_{options.size}"
    if len(doses) == len(DOSES):
        return name
    return name + "_" + "_".join(f"{DOSES[d]:g}" for d in doses)


def pooled(rows: list[dict], also: list[Path], **settings) -> list[dict]:
    """``rows`` and those of the earlier results files ``also``, without repeats (a file
    that pooled others may be pooled again).

    Raises:
        ValueError: a file lacks one of ``settings`` (e.g. ``size``, ``views``,
            ``iterations``, the prior's ``weights_sha256``), records another value, or
            has rows without ``variance``; the message names the file and the field.
    """
    pool = list(rows)
    for path in also:
        record = json.loads(Path(path).read_text())
        for key, value in settings.items():
            if key not in record:
                raise ValueError(f"{path}: no '{key}' recorded (this run's is {value}); "
                                 "rerun it with the current script")
            if record[key] != value:
                raise ValueError(f"{path}: {key} is {record[key]}, this run's is {value}")
        if any("variance" not in row for row in record["rows"]):
            raise ValueError(f"{path}: rows without 'variance' (written by an older script)")
        pool += record["rows"]
    unique = {json.dumps(row, sort_keys=True): row for row in pool}
    return list(unique.values())


def best_per_dose(rows: list[dict], setting: tuple[str, ...], score: str = "psnr_full_db",
                  *, settled_first: bool = False) -> dict[str, dict]:
    """For each dose, the ``setting`` values (row keys) with the best mean ``score`` over
    the dose's scans, among the settings run on every one of them, with that mean, the
    mean ``variance`` and the scans. With ``settled_first``, settings whose solver stopped
    by its rule on every scan (rows' ``"converged"``) come first: a point that ran into
    the iteration cap is chosen only when no setting settled everywhere, so a default is
    chosen for its fixed point, not for an early stop. ``ValueError`` when no setting ran
    on every scan."""
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
            raise ValueError(f"{dose}: no setting was run on every scan ({scans_run})")
        settled = {values: group for values, group in complete.items()
                   if settled_first and all(r.get("converged", True) for r in group)}
        values, group = max((settled or complete).items(),
                            key=lambda item: _mean(item[1], score))
        best[dose] = {**dict(zip(setting, values, strict=True)), score: _mean(group, score),
                      "variance": _mean(group, "variance"), "scans": scans_run}
    return best


def best_interpolated(rows: list[dict], score: str = "psnr_full_db", *,
                      settled_first: bool = False) -> dict:
    """The best setting of one group of rows (one grid size and dose) when the scans
    were run at settings that differ from scan to scan.

    Each row holds ``seed`` (the scan), ``setting`` (the log of a positive setting,
    e.g. TV's ``c`` relative to the scan's noise), ``score``, ``variance`` and,
    for PnP, ``sigma_hu``. Per ``sigma_hu``, each scan's score is interpolated
    linearly in ``setting`` on :data:`INTERPOLATION_POINTS` points of the range
    that every scan covers, and averaged over the scans; when every scan ran one and
    the same setting, that point is the range (and its edge). With ``settled_first``,
    only the rows whose solver stopped by its rule (``"converged"``) are interpolated,
    as long as they leave a choice, as in :func:`best_per_dose`.

    Returns:
        ``sigma_hu`` (None without), ``setting`` (the best, no longer a log),
        the mean ``score`` there, ``on_edge`` (the best lies on the edge of the
        common range: extend the grid), the mean ``variance``, the ``scans`` and
        ``curves``: per strength, ``[log setting, mean score]`` pairs.

    Raises:
        ValueError: no strength was run on every scan with a common range.
    """
    scans = sorted({str(r["seed"]) for r in rows})
    if settled_first:
        settled = [r for r in rows if r.get("converged", True)]
        if {str(r["seed"]) for r in settled} == set(scans):
            try:
                return {**best_interpolated(settled, score), "settled": True,
                        "variance": float(np.mean([r["variance"] for r in rows]))}
            except ValueError:
                pass  # nothing settled on every scan: choose among all rows
    strengths = sorted({r.get("sigma_hu") for r in rows}, key=lambda s: s or 0.0)
    best: dict | None = None
    means: dict[float | None, list[list[float]]] = {}
    for strength in strengths:
        curves = []
        for scan in scans:
            points = sorted((r["setting"], r[score]) for r in rows
                            if str(r["seed"]) == scan and r.get("sigma_hu") == strength)
            curves.append(points)
        if not all(curves):
            continue  # this strength was not run on every scan
        low = max(c[0][0] for c in curves)
        high = min(c[-1][0] for c in curves)
        if low > high + _SAME_SETTING:
            continue
        # one common setting (a grid of strengths at one data scale) is a range of one point
        grid = (np.linspace(low, high, INTERPOLATION_POINTS) if high - low > _SAME_SETTING
                else np.array([low]))
        mean = np.mean([np.interp(grid, *zip(*c, strict=True)) for c in curves], axis=0)
        means[strength] = np.stack([grid, mean], 1).tolist()
        k = int(mean.argmax())
        if best is None or mean[k] > best[score]:
            best = {"sigma_hu": strength, "setting": float(np.exp(grid[k])),
                    score: float(mean[k]), "on_edge": k in (0, len(grid) - 1)}
    if best is None:
        raise ValueError(f"no setting range was run on every scan of the group ({scans})")
    return {**best, "variance": float(np.mean([r["variance"] for r in rows])), "scans": scans,
            "curves": means}


def means_against(rows: list[dict], reference: str) -> list[dict]:
    """Per ``(weights, dose)`` of ``rows`` (one per scan, with :data:`QUALITY_COLUMNS`): the
    mean of each quality column over the scans and, as ``delta_<column>``, its difference
    from the mean of the weights ``reference`` at the same dose."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["weights"], row["dose"]), []).append(row)
    means = {key: {c: _mean(group, c) for c in QUALITY_COLUMNS} for key, group in groups.items()}
    return [{"weights": weights, "dose": dose, **mean,
             **{f"delta_{c}": mean[c] - means[(reference, dose)][c] for c in QUALITY_COLUMNS}}
            for (weights, dose), mean in means.items()]


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def markdown_table(rows: list[dict[str, object]]) -> str:
    """Rows (dicts with the same keys) as an aligned Markdown table; floats to 3 digits."""
    columns = list(rows[0])
    cells = [[f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |"
              for row in cells]
    return "\n".join(lines)


def write_record(path: Path | str, payload: dict) -> Path:
    """Write ``payload`` as JSON to ``path`` (atomically) with the machine and the package
    versions added under ``"machine"``."""
    path = Path(path)
    machine = {"processor": platform.machine(), "torch_threads": str(torch.get_num_threads()),
               **package_versions()}
    with staged_file(path) as temporary:
        temporary.write_text(json.dumps({**payload, "machine": machine}, indent=2) + "\n")
    return path
