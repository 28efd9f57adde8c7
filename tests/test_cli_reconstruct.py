"""``ctpnp reconstruct`` as a user runs it, in a subprocess: end to end, interrupted, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom.examples
import pytest
import torch
import torch.nn.functional as F

from ctpnp.io import read_ct_series, write_ct_series
from ctpnp.io.affine import axial_affine
from ctpnp.io.nifti_read import read_nifti
from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR

VIEWS = 150
PHOTONS = 2e4
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process on the shared cores
FINAL_OUTPUTS = {"dicom", "volume.nii.gz", "log_prior.nii.gz", "log_prior.png", "report.json",
                 "implausibility.nii.gz", "implausibility", "implausibility.png"}


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "ctpnp.cli", *map(str, args)]


def ctpnp(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=300, env=ENV)


def dciodvfy_errors(folder: Path) -> list[str]:
    """dciodvfy's lines that contain "Error", over every file of ``folder``."""
    lines = []
    for path in sorted(folder.iterdir()):
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                              check=False)
        lines += [f"{path.name}: {line}" for line in (done.stdout + done.stderr).splitlines()
                  if "Error" in line]
    return lines


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """pydicom's CT slice in ``images/``, a simulated low-dose scan of it in ``scan/``,
    reconstructed by FBP into ``fbp/`` and by the default method into ``pnp/``."""
    root = tmp_path_factory.mktemp("reconstruct")
    (root / "images").mkdir()
    shutil.copy(pydicom.examples.get_path("ct"), root / "images")
    runs = [("simulate", root / "images", root / "scan", "--photons", PHOTONS, "--views", VIEWS,
             "--seed", 3),
            ("reconstruct", root / "scan", root / "fbp", "--method", "fbp",
             "--grid-like", root / "images"),
            ("reconstruct", root / "scan", root / "pnp", "--grid-like", root / "images")]
    for args in runs:
        start = time.perf_counter()
        done = ctpnp(*args)
        assert done.returncode == 0, done.stderr
        print(f"{args[0]} {args[2].name}: {time.perf_counter() - start:.1f} s")
    return root


def test_reconstructions_have_the_reference_grid_and_a_report(study):
    reference = read_ct_series(study / "images")
    for name in ("fbp", "pnp"):
        series = read_ct_series(study / name / "dicom")
        assert series.hu.shape == reference.hu.shape
        np.testing.assert_allclose(series.affine, reference.affine, atol=1e-4)
        hu, affine = read_nifti(study / name / "volume.nii.gz")
        np.testing.assert_allclose(affine, reference.affine, atol=1e-4)
        np.testing.assert_allclose(series.hu, hu, atol=0.5)  # DICOM stores whole HU
        assert np.abs(hu - reference.hu).mean() < 100  # HU, in place, not μ
        assert series.datasets[0].StudyInstanceUID == reference.datasets[0].StudyInstanceUID
    assert set(os.listdir(study / "fbp")) == {"dicom", "volume.nii.gz", "report.json"}
    assert set(os.listdir(study / "pnp")) == FINAL_OUTPUTS
    report = json.loads((study / "pnp" / "report.json").read_text())
    assert (report["method"], report["prior"]) == (DEFAULT_METHOD, DEFAULT_PRIOR)
    assert report["diverged_slices"] == [] and report["resumed_slices"] == 0
    (slice_record,) = report["slices"]
    assert 1 <= slice_record["iterations"] <= report["parameters"]["max_iter"]
    summary = slice_record["log_prior_nats_per_pixel"]
    log_prior, _ = read_nifti(study / "pnp" / "log_prior.nii.gz")
    assert summary["mean"] == pytest.approx(float(log_prior.mean()), rel=1e-5)
    assert summary["p5"] <= summary["p50"] <= summary["p95"]
    assert report["versions"]["pydicom"] == pydicom.__version__
    assert report["timings_s"]["total"] > report["timings_s"]["reconstruct"] > 0


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy not installed (Debian/Ubuntu package: dicom3tools)")
def test_dicom_outputs_pass_dciodvfy(study):
    for name in ("fbp", "pnp"):
        assert dciodvfy_errors(study / name / "dicom") == []


def test_implausibility_series_overlays_the_reconstruction(study):
    ct = read_ct_series(study / "pnp" / "dicom")
    overlay = read_ct_series(study / "pnp" / "implausibility")
    assert np.array_equal(overlay.affine, ct.affine)
    for a, b in zip(ct.datasets, overlay.datasets, strict=True):
        assert (b.StudyInstanceUID, b.FrameOfReferenceUID) == (a.StudyInstanceUID,
                                                              a.FrameOfReferenceUID)
        assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    if shutil.which("dciodvfy") is not None:
        assert dciodvfy_errors(study / "pnp" / "implausibility") == []


def test_default_pnp_beats_fbp(study):
    out = study / "comparison"
    done = ctpnp("compare", study / "fbp", study / "pnp", "--reference", study / "images",
                 "--out", out)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    metrics = {r["name"]: r["metrics"] for r in
               json.loads((out / "metrics.json").read_text())["reconstructions"]}
    assert "log-prior" not in done.stderr and (out / "comparison.png").stat().st_size > 0
    # the default PnP wrote a calibrated map: compare measures it against the true error
    checks = {r["name"]: r["implausibility_vs_error"] for r in
              json.loads((out / "metrics.json").read_text())["reconstructions"]}
    z, _ = read_nifti(study / "pnp" / "implausibility.nii.gz")
    assert checks["fbp"] is None
    assert checks["pnp"]["regions"] == int(np.isfinite(z[:, ::16, ::16]).sum()) > 0
    assert "implausibility of pnp vs its error" in done.stdout
    for window in ("full", "soft_tissue"):
        assert (metrics["pnp"][window]["overall"]["psnr_db"]
                > metrics["fbp"][window]["overall"]["psnr_db"]), window


# --------------------------------------------------------------------------- interruption
SLICES = 3
INTERRUPTED = ("--iterations", 3, "--workers", 1)


@pytest.fixture(scope="module")
def volume_scan(tmp_path_factory) -> tuple[Path, Path]:
    """A 3-slice 64² series (the example slice, shifted per slice) and its simulated scans;
    plus an uninterrupted reconstruction of them. Returns ``(root, reference run)``."""
    root = tmp_path_factory.mktemp("volume")
    hu = torch.from_numpy(read_ct_series(_example_folder(root)).hu)
    small = F.avg_pool2d(hu[:, None], 2)[:, 0]
    slices = np.stack([np.roll(small[0].numpy(), 3 * k, axis=1) for k in range(SLICES)])
    write_ct_series(slices, root / "images", affine=axial_affine(slices.shape, (2.0, 1.3, 1.3)))
    done = ctpnp("simulate", root / "images", root / "scan", "--photons", PHOTONS,
                 "--views", 120, "--seed", 5)
    assert done.returncode == 0, done.stderr
    done = ctpnp("reconstruct", root / "scan", root / "whole", *INTERRUPTED)
    assert done.returncode == 0, done.stderr
    return root, root / "whole"


def _example_folder(root: Path) -> Path:
    folder = root / "example"
    folder.mkdir()
    shutil.copy(pydicom.examples.get_path("ct"), folder)
    return folder


def _interrupt(args: list[str], out: Path, sig: signal.Signals, after: int, log: Path) -> int:
    """Start ``args`` (stderr to ``log``), send ``sig`` once slice ``after`` (0-based) is
    finished; returns the exit status."""
    with log.open("w") as stderr:
        # a terminal's Ctrl-C: SIGINT handled by default even when this test runs in a
        # background job, whose children inherit SIGINT ignored
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, env=ENV,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                    signal.SIG_DFL))
        finished = out / ".work" / "slices" / f"slice_{after:05d}.json"
        deadline = time.monotonic() + 200
        while not finished.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(sig)
        return process.wait(timeout=60)


def _finished_slices(out: Path) -> int:
    return len(list((out / ".work" / "slices").glob("slice_*.json")))


def test_interrupted_runs_resume_to_the_same_volume(volume_scan, tmp_path):
    """Killed (SIGKILL) after slice 1, resumed and interrupted (SIGINT, Ctrl-C) after
    slice 2, resumed to the end: the volume equals an uninterrupted run's bit for bit."""
    root, whole = volume_scan
    out = tmp_path / "study"
    args = command("reconstruct", root / "scan", out, *INTERRUPTED)
    resumed = 0
    for sig, after, status in ((signal.SIGKILL, 0, -signal.SIGKILL), (signal.SIGINT, 1, 130)):
        log = tmp_path / f"{sig.name}.log"
        assert _interrupt(args, out, sig, after, log) == status, log.read_text()
        assert os.listdir(out) == [".work"]  # no final output, whole or partial
        if resumed:
            assert f"resuming: {resumed} of {SLICES} slices already finished" in log.read_text()
            assert log.read_text().endswith("ctpnp: interrupted\n")
        resumed = _finished_slices(out)
        assert after + 1 <= resumed < SLICES

    done = ctpnp(*args[3:])
    assert done.returncode == 0, done.stderr
    assert f"resuming: {resumed} of {SLICES} slices already finished" in done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_slices"] == resumed
    assert [s["resumed"] for s in report["slices"]] == [k < resumed for k in range(SLICES)]
    assert set(os.listdir(out)) == FINAL_OUTPUTS  # the work folder is gone
    for name in ("volume.nii.gz", "log_prior.nii.gz"):
        np.testing.assert_array_equal(read_nifti(out / name)[0], read_nifti(whole / name)[0])


def test_batched_slices_give_the_per_slice_volume(volume_scan, tmp_path):
    """``--batch-size 3``: one solver call for the three slices, the volume of one at a time."""
    root, whole = volume_scan
    done = ctpnp("reconstruct", root / "scan", tmp_path / "batched", *INTERRUPTED,
                 "--batch-size", SLICES)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "batched" / "report.json").read_text())
    assert (report["batch_size"], json.loads((whole / "report.json").read_text())["batch_size"]
            ) == (SLICES, 1)
    np.testing.assert_allclose(read_nifti(tmp_path / "batched" / "volume.nii.gz")[0],
                               read_nifti(whole / "volume.nii.gz")[0], atol=0.5)


def test_finished_study_is_not_overwritten(volume_scan):
    root, whole = volume_scan
    before = (whole / "report.json").read_text()
    done = ctpnp("reconstruct", root / "scan", whole, *INTERRUPTED)
    assert done.returncode != 0 and "holds a finished reconstruction" in done.stderr
    assert (whole / "report.json").read_text() == before


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case", ["missing", "empty", "ct-images", "prior-file", "cuda"])
def test_bad_input_gives_one_line(study, tmp_path, case):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    inputs = {"missing": tmp_path / "nowhere", "empty": tmp_path / "empty",
              "ct-images": study / "images"}
    args = {"prior-file": ("--prior", tmp_path / "mine.safetensors"),
            "cuda": ("--device", "cuda")}.get(case, ())
    done = ctpnp("reconstruct", inputs.get(case, study / "scan"), out, *args)
    assert done.returncode != 0
    assert done.stderr.startswith("ctpnp: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    named = {"missing": "nowhere", "empty": "empty", "ct-images": "not DICOM-CT-PD",
             "prior-file": "mine.safetensors", "cuda": "cuda"}[case]
    assert named in done.stderr
    assert not out.exists()


def test_partial_scan_warns_and_anonymized_output_leaves_the_study(study, tmp_path):
    """A scan missing its first view reconstructs with one warning line naming the file and
    the tag; --anonymize drops the patient the simulated raw data carries; --orientation-check
    reports a verdict (the example slice is cut by the image edge: cannot tell)."""
    scan = tmp_path / "scan"
    shutil.copytree(study / "scan" / "slice_0001", scan)
    raw = pydicom.dcmread(scan / "PD000002.dcm", stop_before_pixels=True)
    reference = read_ct_series(study / "images").datasets[0]
    assert raw.PatientID == reference.PatientID != ""  # simulate keeps the series' patient
    (scan / "PD000001.dcm").unlink()
    out = tmp_path / "out"
    done = ctpnp("reconstruct", scan, out, "--method", "fbp", "--anonymize",
                 "--orientation-check")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("ctpnp: warning")]
    assert any(f"{scan / 'PD000002.dcm'}: DetectorFocalCenterAngularPosition (7031,1001)" in line
               and "1 view(s) short of a full turn" in line for line in warnings), done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["anonymized"] and report["orientation_check"]["verdict"] in (
        "upright", "cannot tell")
    assert any("short of a full turn" in warning for warning in report["warnings"])
    written = read_ct_series(out / "dicom").datasets[0]
    assert written.PatientID != raw.PatientID and written.PatientName == ""
    assert written.StudyInstanceUID != raw.StudyInstanceUID
