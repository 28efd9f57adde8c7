"""``ctpnp simulate`` and ``ctpnp compare`` run as a user runs them, in a subprocess."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom.examples
import pytest
import torch

from ctpnp import ScanGeometry, Tomography, physics
from ctpnp.apps.simulate import scan_acquisition
from ctpnp.io import read_ct_series, read_projections, slice_z_mm, write_ct_series
from ctpnp.quality import FULL_WINDOW, SOFT_TISSUE_WINDOW, psnr_hu, rmse_hu, ssim_hu

VIEWS = 120
DOSES = {"low": 2e3, "high": 2e5}


def ctpnp(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctpnp.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """``images/`` with pydicom's CT slice and ``scan_low/``, ``scan_high/`` simulated from it."""
    root = tmp_path_factory.mktemp("simulate")
    (root / "images").mkdir()
    shutil.copy(pydicom.examples.get_path("ct"), root / "images")
    for dose, photons in DOSES.items():
        done = ctpnp("simulate", root / "images", root / f"scan_{dose}", "--photons", photons,
                     "--views", VIEWS, "--seed", 1, "--electronic-noise", 5)
        assert done.returncode == 0, done.stderr
    return root


def fbp_hu(scan: Path, series) -> np.ndarray:
    """``(1, H, W)`` HU: FBP (Hann) of a simulated scan on the series' grid."""
    data = read_projections(scan)
    geometry = data.geometry.fan_geometry(series.hu.shape[1:], series.spacing_mm[1])
    y = torch.from_numpy(data.data[:, 0])[None, None]
    mu = Tomography(geometry).fbp(y, filter="hann")
    return physics.mu_to_hu(mu, data.geometry.mu_water_per_mm)[0].numpy()


def test_simulate_writes_the_simulated_geometry(work):
    series = read_ct_series(work / "images")
    shape, pixel_mm = series.hu.shape[1:], series.spacing_mm[1]
    data = read_projections(work / "scan_low")
    expected = scan_acquisition(shape, pixel_mm, VIEWS, z_mm=float(slice_z_mm(series)[0]))
    assert data.data.shape == (VIEWS, 1, expected.n_channels)
    assert data.geometry.scan_type == "axial"
    np.testing.assert_allclose(data.geometry.focal_z_mm, -75.7, atol=1e-4)
    np.testing.assert_array_equal(data.geometry.photons, DOSES["low"])
    read_back = data.geometry.fan_geometry(shape, pixel_mm)
    assert read_back == expected.fan_geometry(shape, pixel_mm)
    clinical = ScanGeometry.clinical_fan(shape, pixel_mm, VIEWS, detector="curved")
    assert (read_back.kind, read_back.detector, read_back.n_channels) == ("fan", "curved",
                                                                          clinical.n_channels)
    np.testing.assert_allclose(read_back.angles_rad, clinical.angles_rad, atol=1e-6)
    assert math.isclose(read_back.channel_spacing_mm, clinical.channel_spacing_mm, rel_tol=1e-6)
    assert math.isclose(read_back.source_detector_mm, clinical.source_detector_mm, rel_tol=1e-6)


def test_more_photons_give_less_noise(work):
    series = read_ct_series(work / "images")
    reference = torch.from_numpy(series.hu)[:, None]
    errors = {dose: float(rmse_hu(torch.from_numpy(fbp_hu(work / f"scan_{dose}", series))[:, None],
                                  reference, SOFT_TISSUE_WINDOW)) for dose in DOSES}
    assert errors["high"] < 0.7 * errors["low"], errors


def test_compare_ranks_doses_and_matches_metrics(work):
    series = read_ct_series(work / "images")
    recon = {}
    for dose in DOSES:
        recon[dose] = fbp_hu(work / f"scan_{dose}", series)
        write_ct_series(recon[dose], work / f"fbp_{dose}", like=series)
    out = work / "comparison"
    done = ctpnp("compare", work / "fbp_low", work / "fbp_high", "--reference",
                 work / "images", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "[-1000, 2000] HU" in done.stdout and "[-160, 240] HU" in done.stdout
    assert (out / "comparison.png").stat().st_size > 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["windows"]["soft_tissue"]["data_range_hu"] == 400
    metrics = {r["name"]: r["metrics"] for r in result["reconstructions"]}
    stored = {row["reconstruction"] + row["window"]: row
              for row in csv.DictReader((out / "metrics.csv").open()) if row["slice"] == "all"}
    reference = torch.from_numpy(series.hu)[:, None]
    for window_name, window in (("full", FULL_WINDOW), ("soft_tissue", SOFT_TISSUE_WINDOW)):
        low, high = (metrics[f"fbp_{d}"][window_name]["overall"] for d in DOSES)
        assert high["psnr_db"] > low["psnr_db"] and high["ssim"] > low["ssim"]
        assert high["rmse_hu"] < low["rmse_hu"]
        for dose in DOSES:
            # the series stores whole HU: recompute from what compare read
            hu = torch.from_numpy(read_ct_series(work / f"fbp_{dose}").hu)[:, None]
            overall = metrics[f"fbp_{dose}"][window_name]["overall"]
            assert overall["psnr_db"] == pytest.approx(float(psnr_hu(hu, reference, window)))
            assert overall["ssim"] == pytest.approx(float(ssim_hu(hu, reference, window)))
            assert overall["rmse_hu"] == pytest.approx(float(rmse_hu(hu, reference, window)))
            row = stored[f"fbp_{dose}{window_name}"]
            assert float(row["psnr_db"]) == pytest.approx(overall["psnr_db"])
            assert float(row["data_range_hu"]) == window.width_hu
            assert f"fbp_{dose}" in done.stdout


def test_compare_names_a_shape_mismatch(work):
    series = read_ct_series(work / "images")
    write_ct_series(series.hu[:, :64, :64], work / "small", affine=series.affine)
    done = ctpnp("compare", work / "small", "--reference", work / "images",
                 "--out", work / "cmp_bad")
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "shape (1, 64, 64)" in done.stderr


@pytest.mark.parametrize("case", ["missing", "empty", "not-ct", "parallel", "compare-empty"])
def test_bad_input_gives_one_line(work, tmp_path, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not a CT image\n")
    out = tmp_path / "out"
    args = {
        "missing": ("simulate", tmp_path / "nowhere", out),
        "empty": ("simulate", tmp_path / "empty", out),
        "not-ct": ("simulate", tmp_path / "text", out),
        "parallel": ("simulate", work / "images", out, "--geometry", "parallel"),
        "compare-empty": ("compare", tmp_path / "empty", "--reference", work / "images",
                          "--out", out),
    }[case]
    if args[0] == "simulate":
        args = (*args, "--photons", 1e4, "--views", 90)
    done = ctpnp(*args)
    assert done.returncode != 0
    assert done.stderr.startswith("ctpnp: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_help_answers_without_loading_torch_odl_or_astra():
    probe = ("import sys, ctpnp.cli\n"
             "ctpnp.cli.build_parser().format_help()\n"
             "print(sorted({'torch', 'odl', 'astra', 'numpy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "reconstruct" in ctpnp("--help").stdout
