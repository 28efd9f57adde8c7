"""Phantom validation study: phantoms × doses × methods, with a Markdown report.

Scans held-out random anatomy (the learned priors' training family), the
Shepp–Logan, FORBILD and water-insert phantoms (out of family) and pydicom's
CT slice (real CT) at several doses from exact line integrals plus Poisson
noise, reconstructs each scan with FBP, TV and the PnP methods of the
configuration, and writes to ``--out``:

* ``study.md``: set-up, quality vs dose, prior mismatch (PnP gain over FBP in
  and out of family, what the equivariant prior changes, the log-prior map's
  mean and its correlation with the error), the calibrated implausibility of
  every reconstruction (score, flag, how well it finds the case's own errors),
  insert CT numbers and noise, convergence, every case;
* ``results.csv`` (one row per reconstruction), ``inserts.csv`` (one row per
  insert and reconstruction);
* ``quality_vs_dose.png``, ``convergence.png``, ``hu_accuracy.png``,
  ``noise_vs_dose.png``, ``montage.png``, ``log_prior_vs_error.png``,
  ``implausibility.png``;
* ``cases/``: each finished case (``.json`` record, ``.npy`` image, log-prior
  map and implausibility). A re-run with the same configuration skips finished cases,
  so an interrupted study resumes where it stopped.

Run: ``.venv/bin/python pipelines/phantom_study.py --out study_output
[--config my_study.yaml]``. The shipped configuration
(``ctpnp/apps/study/default.yaml``: 128² at 0.8 mm, 360 views, two doses, six
scenes, five methods, 66 cases) took 14 minutes on a 2-core machine, one torch
thread, when every method stopped at 10-100 iterations; run to convergence it
costs up to about 3 hours (see README).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ctpnp.apps.study import DEFAULT_CONFIG, StudyConfigError, run_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("study_output"),
                        help="output folder (created; finished cases in it are reused)")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"study configuration (default: {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # two threads per process oversubscribe a shared 2-core machine
    start = time.perf_counter()

    def progress(done: int, total: int, description: str) -> None:
        print(f"[{done}/{total}] {time.perf_counter() - start:7.0f} s  {description}", flush=True)

    try:
        report = run_study(args.out, args.config, progress)
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
