"""Score candidate weights by their default PnP on the validation scans, beside the shipped.

Retrained or fine-tuned weights earn their place by the reconstructions users
get: each weights file (with the dose rule in its card) and the reference
(``--against``, the shipped Prox-denoiser by default) reconstruct the
validation scans (:mod:`ctpnp.evaluation`: phantom 5001 and, by default, the
Hitachi head and lung2's slices 20 and 40; never a test slice) with the
solver's defaults and stopping rule, and the table gives each file's mean
PSNR/SSIM in both windows per dose and its difference from the reference.
Choose on this, then confirm on the benchmarks' test scans once shipped.

Run: ``.venv/bin/python pipelines/calibrate/compare_weights.py W.safetensors [W2 ...]
[--against prox] [--method pnp-admm] [--photons 1e4]`` (one thread; about 75 s per
scan and weights file at 256²); writes every row to
``pipelines/calibrate/results/compare_weights_<size>[_<photons>].json``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from ctpnp import ScanGeometry, Tomography, evaluation, physics
from ctpnp.priors import load
from ctpnp.priors.registry import available, shipped_weights
from ctpnp.quality import quality_row
from ctpnp.registry import PNP_METHODS, solver

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
RESULTS_DIR = Path(__file__).with_name("results")
VALIDATION_SLICES = ("J2K_pixelrep_mismatch.dcm", "lung2/20", "lung2/40")


def weights_path(name: str) -> Path:
    """A shipped prior's weights file, or ``name`` as a path."""
    return shipped_weights(name) if name in available() else Path(name)


def _shown(table: list[dict]) -> list[dict]:
    """``table`` for print: PSNR and RMSE to 0.01, SSIM to 0.001, differences signed."""
    def cell(key: str, value: object) -> object:
        if not isinstance(value, float):
            return value
        digits = 3 if "ssim" in key else 2
        return f"{value:+.{digits}f}" if key.startswith("delta_") else f"{value:.{digits}f}"

    return [{k: cell(k, v) for k, v in row.items()} for row in table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="candidate weights files")
    parser.add_argument("--against", default="prox",
                        help="reference: shipped prior name or weights path")
    parser.add_argument("--method", default="pnp-admm", choices=PNP_METHODS)
    evaluation.add_validation_options(parser)
    parser.set_defaults(real_ct=list(VALIDATION_SLICES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    op = Tomography(ScanGeometry.clinical_fan((args.size, args.size), evaluation.PIXEL_MM,
                                              args.views))
    scans = list(evaluation.validation_scans(op, args))
    reference = weights_path(args.against)
    rows = []
    for path in [reference, *map(Path, args.weights)]:
        prior = load(path)
        for dose, scan, y, hu, _ in scans:
            result = solver(args.method)(y, op, prior)
            rows.append({"weights": path.name, "sha256": prior.card.get("sha256"),
                         "dose": dose, "scan": str(scan), "iters": int(result.n_iter[0]),
                         **quality_row(physics.mu_to_hu(result.x), hu)})
            print(f"{path.name} {dose} {scan}: done", flush=True)
    table = evaluation.means_against(rows, reference.name)
    print(f"\n{args.method} with its defaults on the validation scans, {args.size}² at "
          f"{evaluation.PIXEL_MM} mm, {args.views} views\n")
    print(evaluation.markdown_table(_shown(table)))
    doses = list(dict.fromkeys(r["dose"] for r in rows))
    name = evaluation.results_name(args, "compare_weights", doses)
    record = {"method": args.method, "size": args.size, "views": args.views,
              "seeds": args.seeds, "real_ct": args.real_ct, "reference": reference.name,
              "summary": table, "rows": rows}
    print(f"wrote {evaluation.write_record(RESULTS_DIR / f'{name}.json', record)}")


if __name__ == "__main__":
    main()
