"""How far each validation scan's data lie from the reconstruction model, beside its noise.

Every scan is simulated without the operator that reconstructs it: phantoms from
exact line integrals, real slices from a grid twice as fine
(:mod:`ctpnp.evaluation`). The difference between those clean data and the
reconstruction model applied to the reference image (``A x_ref``) is the model
error no reconstruction can fit away. Its mean variance (post-log,
dimensionless) is set beside the noise variance ``v`` that the solvers
estimate from each dose's noisy scan and weight the data by: where the ratio
nears 1, trusting the data more stops paying, so a data weight chosen for the
real slices (ratio ~0.1 at 10⁵ photons) is too high for the sharp-edged
phantoms (ratio ~1). This chooses nothing; it explains choices.

Run: ``.venv/bin/python pipelines/calibrate/model_error.py [--size 256] [--seeds 5001 9001
9002] [--real-ct lung2/20 J2K_pixelrep_mismatch.dcm]`` (seconds per scan);
writes ``results/model_error_SIZE.json``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from ctpnp import ScanGeometry, Tomography, evaluation, physics
from ctpnp.phantoms import random_anatomy
from ctpnp.simulation import clean_projection

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
RESULTS_DIR = Path(__file__).with_name("results")


def clean_data(scan: int | str, op: Tomography) -> torch.Tensor:
    """The noiseless post-log data ``(1, 1, views, channels)`` that :mod:`ctpnp.evaluation`
    simulates ``scan`` (a random-anatomy seed or a real slice's name) from."""
    if isinstance(scan, str):
        reference = evaluation.real_ct_reference_hu(scan, op.geometry.image_shape[0])
        return clean_projection(reference, op.geometry)
    phantom = random_anatomy(scan, fov_mm=evaluation.PIXEL_MM * op.geometry.image_shape[0])
    return torch.from_numpy(phantom.project(op.geometry))[None, None]


def model_error_rows(scans: list[evaluation.Scan], op: Tomography) -> list[dict]:
    """One row per scan of :mod:`ctpnp.evaluation`: the model-error variance (mean over
    the rays of ``(p - A x_ref)^2``) and its ratio to each dose's noise variance ``v``
    as the solvers estimate it from the noisy scan."""
    rows: dict[int | str, dict] = {}
    for dose, scan, _, reference_hu, variance in scans:
        if scan not in rows:
            model = op.forward(physics.hu_to_mu(reference_hu).clamp_min(0))
            error = float((clean_data(scan, op) - model).double().pow(2).mean())
            rows[scan] = {"scan": str(scan), "model_error_variance": error}
        row = rows[scan]
        row[f"noise variance, {dose}"] = variance
        row[f"ratio, {dose}"] = row["model_error_variance"] / variance
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--seeds", type=int, nargs="*",
                        default=[*evaluation.VALIDATION_SEEDS, *evaluation.TEST_SEEDS])
    parser.add_argument("--real-ct", nargs="*", choices=evaluation.REAL_CT_SLICES,
                        default=list(evaluation.REAL_CT_SLICES))
    args = parser.parse_args()
    op = Tomography(ScanGeometry.clinical_fan((args.size, args.size), evaluation.PIXEL_MM,
                                              args.views))
    photons = list(evaluation.DOSES.values())
    scans = [*evaluation.phantom_scans(op, args.seeds, photons),
             *evaluation.real_ct_scans(op, args.real_ct, photons)]
    rows = model_error_rows(scans, op)
    print(f"Model error vs noise, {args.size}² at {evaluation.PIXEL_MM} mm, {args.views} views\n")
    print(evaluation.markdown_table(rows))
    path = evaluation.write_record(RESULTS_DIR / f"model_error_{args.size}.json",
                                   {"size": args.size, "pixel_mm": evaluation.PIXEL_MM,
                                    "views": args.views, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
