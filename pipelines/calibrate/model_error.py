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


def model_error_row(name: str, clean: torch.Tensor, reference_hu: torch.Tensor,
                    op: Tomography, noise_seed: int) -> dict:
    """Model-error variance of one scan and its ratio to each dose's noise variance, as
    the solvers estimate it from the noisy scan (:func:`ctpnp.physics.estimate_noise_variance`;
    the scans of :mod:`ctpnp.evaluation`, same noise seed). ``clean``: ``(1, 1, views,
    channels)`` post-log data; ``reference_hu``: ``(1, 1, H, W)`` on ``op``'s grid."""
    model = op.forward(physics.hu_to_mu(reference_hu).clamp_min(0))
    error_variance = float((clean - model).double().pow(2).mean())
    row = {"scan": name, "model_error_variance": error_variance}
    for dose, photons in evaluation.DOSES.items():
        noisy = physics.simulate_low_dose(clean, photons, seed=noise_seed)
        noise = float(physics.estimate_noise_variance(noisy)[0])
        row[f"noise variance, {dose}"] = noise
        row[f"ratio, {dose}"] = error_variance / noise
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--seeds", type=int, nargs="*",
                        default=[*evaluation.VALIDATION_SEEDS, *evaluation.TEST_SEEDS])
    parser.add_argument("--real-ct", nargs="*", choices=evaluation.REAL_CT_SLICES,
                        default=list(evaluation.REAL_CT_SLICES))
    args = parser.parse_args()
    geometry = ScanGeometry.clinical_fan((args.size, args.size), evaluation.PIXEL_MM,
                                         args.views)
    op = Tomography(geometry)
    rows = []
    for seed in args.seeds:
        phantom = random_anatomy(seed, fov_mm=evaluation.PIXEL_MM * args.size)
        reference = torch.from_numpy(phantom.rasterize(geometry))[None, None]
        exact = torch.from_numpy(phantom.project(geometry))[None, None]
        rows.append(model_error_row(str(seed), exact, reference, op, seed))
    for name in args.real_ct:
        reference = evaluation.real_ct_reference_hu(name, args.size)
        rows.append(model_error_row(name, clean_projection(reference, geometry), reference, op, 0))
    print(f"Model error vs noise, {args.size}² at {evaluation.PIXEL_MM} mm, {args.views} views\n")
    print(evaluation.markdown_table(rows))
    path = evaluation.write_record(RESULTS_DIR / f"model_error_{args.size}.json",
                                   {"size": args.size, "pixel_mm": evaluation.PIXEL_MM,
                                    "views": args.views, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
