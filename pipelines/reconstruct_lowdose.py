"""Reconstruct a low-dose scan folder: DICOM-CT-PD in, DICOM series, NIfTI and report out.

The library call behind ``ctpnp reconstruct``, as a script to copy and adapt:
:func:`ctpnp.apps.reconstruct.reconstruct_scan` with the default PnP method and
prior (:data:`ctpnp.registry.DEFAULT_METHOD`, ``DEFAULT_PRIOR``), a
progress bar over slices, and a summary of ``report.json``.

Run (``SCAN_DIR``: one DICOM-CT-PD scan, axial or helical, or the
``slice_NNNN/`` folders of ``ctpnp simulate``)::

    .venv/bin/python pipelines/reconstruct_lowdose.py SCAN_DIR OUT_DIR [--grid-like IMAGES_DIR]

Expected output: a progress bar, then one line per slice (iterations, converged,
mean log-prior) and the files written to ``OUT_DIR``: ``dicom/``,
``volume.nii.gz``, ``log_prior.nii.gz``, ``log_prior.png``, ``report.json``.
Interrupted (Ctrl-C), the same command resumes from the finished slices.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ctpnp.apps.reconstruct import reconstruct_scan
from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan", type=Path, help="DICOM-CT-PD folder (or simulate's output)")
    parser.add_argument("out", type=Path, help="study folder to create or resume")
    parser.add_argument("--grid-like", type=Path, help="reference CT series giving the grid")
    parser.add_argument("--workers", type=int, default=1, help="CPU worker processes")
    args = parser.parse_args(argv)

    bar = tqdm(unit="slice", desc=f"{DEFAULT_METHOD} ({DEFAULT_PRIOR})", file=sys.stderr)

    def progress(done: int, total: int, _note: str) -> None:
        bar.total = total
        bar.update(done - bar.n)

    report = reconstruct_scan(args.scan, args.out, grid_like=args.grid_like,
                              workers=args.workers, progress=progress)
    bar.close()
    for record in report.content["slices"]:
        log_prior = record.get("log_prior_nats_per_pixel", {}).get("mean", float("nan"))
        print(f"slice {record['slice']:4d}: {record['iterations']:3d} iterations, "
              f"converged {record['converged']}, diverged {record['diverged']}, "
              f"mean log-prior {log_prior:.4f} nats/pixel")
    print(f"{report.content['timings_s']['total']:.1f} s; wrote "
          + ", ".join(str(path) for path in report.files))


if __name__ == "__main__":
    main()
