"""The phantom validation study on a tiny configuration: tables, resume, errors, physics."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ctpnp.apps.study import DEFAULT_CONFIG, StudyConfigError, load_config, run_study
from ctpnp.apps.study.config import DEFAULT_IMPLAUSIBILITY
from ctpnp.apps.study.measure import implausibility
from ctpnp.apps.study.run import plan
from ctpnp.priors import load as load_prior
from ctpnp.priors.registry import fingerprint
from ctpnp.projector import Tomography
from ctpnp.quality import REGION_PX, calibration_path, indicator, load_calibration, region_means
from ctpnp.quality.detection import detection_scores
from ctpnp.quality.validation import geometry

TINY = """\
grid: {size: 64, pixel_mm: 0.8, views: 90}
photons: [1.0e+4, 1.0e+5]
log_prior: {prior: prox}
scenes:
  - {name: anatomy_7001, source: anatomy, seed: 7001}
  - {name: water_inserts, source: phantom, phantom: water_inserts, rois: true}
methods:
  - {name: FBP, solver: fbp}
  - {name: TV, solver: tv, max_iter: 10, rtol: 0.05}
  - {name: PnP-ADMM LPN, solver: pnp-admm, prior: lpn, max_iter: 2}
"""
METHODS = ("FBP", "TV", "PnP-ADMM LPN")
SCENES = ("anatomy_7001", "water_inserts")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The tiny study run once: (config path, output folder, progress descriptions)."""
    folder = tmp_path_factory.mktemp("study")
    config = folder / "tiny.yaml"
    config.write_text(TINY)
    calls: list[str] = []
    report = run_study(folder / "out", config, progress=lambda i, n, text: calls.append(text))
    assert report == folder / "out" / "study.md"
    return config, folder / "out", calls


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_tables_hold_every_case_with_finite_values(study):
    _, out, calls = study
    rows = _rows(out / "results.csv")
    assert {(r["scene"], float(r["photons"]), r["method"]) for r in rows} == {
        (s, p, m) for s in SCENES for p in (1e4, 1e5) for m in METHODS}
    assert len(rows) == 12 and len(calls) == 14  # 12 reconstructions + 2 reference maps
    for row in rows:
        for column in ("psnr_full_db", "psnr_soft_db", "ssim_full", "ssim_soft", "rmse_hu",
                       "seconds", "mean_log_prior", "pearson", "spearman"):
            assert math.isfinite(float(row[column])), (row["scene"], row["method"], column)
        assert row["diverged"] == "False"
    markdown = (out / "study.md").read_text()
    for name in (*METHODS, *SCENES, "Prior mismatch", "HU accuracy"):
        assert name in markdown
    assert "Implausibility (calibrated quality indicator)" in markdown
    assert "![Implausibility of reconstructions](implausibility.png)" in markdown
    for figure in ("quality_vs_dose", "convergence", "hu_accuracy", "noise_vs_dose", "montage",
                   "log_prior_vs_error", "implausibility"):
        assert (out / f"{figure}.png").stat().st_size > 1000
    inserts = _rows(out / "inserts.csv")
    assert len(inserts) == 7 * 2 * len(METHODS)


def test_each_method_stops_by_its_own_rule(study):
    """TV's loose threshold stops it before its cap; the PnP method keeps its solver's
    default threshold and runs into its cap of 2. The report states both rules."""
    _, out, _ = study
    rows = _rows(out / "results.csv")
    tv = [r for r in rows if r["method"] == "TV"]
    pnp = [r for r in rows if r["method"] == "PnP-ADMM LPN"]
    assert all(r["converged"] == "True" and 3 <= int(r["n_iter"]) < 10 for r in tv), tv
    assert all(r["converged"] == "False" and int(r["n_iter"]) == 2 for r in pnp), pnp
    markdown = (out / "study.md").read_text()
    assert "relative change < 0.05, at most 10 iterations" in markdown
    assert "relative change < 0.0001, at most 2 iterations" in markdown


def test_case_keys_name_the_priors_weights_and_rules(study):
    config, _, _ = study
    settings = load_config(config)
    keys = {case.id: case.key(settings) for case in plan(settings)}
    lpn_case = next(key for case_id, key in keys.items() if case_id.endswith("pnp_admm_lpn"))
    scorer = DEFAULT_IMPLAUSIBILITY  # the tiny config names none
    assert lpn_case["priors"] == {name: fingerprint(name) for name in ("lpn", "prox", scorer)}
    assert all(key["priors"].keys() >= {"prox"} for key in keys.values())  # the log prior
    shipped = hashlib.sha256(calibration_path(scorer).read_bytes()).hexdigest()
    for case_id, key in keys.items():  # references have no data, so no implausibility
        assert key["implausibility"] == (None if case_id.endswith("__reference") else
                                         {"prior": scorer, "fingerprint": fingerprint(scorer),
                                          "sha256": shipped}), case_id


def _cases(out: Path) -> dict[str, tuple[dict, np.ndarray]]:
    """Every stored case: id -> (record, the ``(3, H, W)`` arrays)."""
    return {path.stem: (json.loads(path.read_text()), np.load(path.with_suffix(".npy")))
            for path in (out / "cases").glob("*.json")}


def test_implausibility_of_every_reconstruction_agrees_with_its_map_and_error(study):
    """Each record's verdict and detection are those of its stored map and its stored image's
    error; references store no map; the thresholds are the calibration's."""
    _, out, _ = study
    calibration = load_calibration(DEFAULT_IMPLAUSIBILITY, fingerprint(DEFAULT_IMPLAUSIBILITY))
    thresholds = [d.threshold_z for d in calibration.doses]
    cases = _cases(out)
    references = {r["scene"]: arrays for r, arrays in cases.values() if r["method"] is None}
    assert len(references) == 2 and len(cases) == 14
    for record, arrays in cases.values():
        assert arrays.shape[0] == 3 and arrays.dtype == np.float32
        z_map = arrays[2]
        if record["method"] is None:
            assert np.isnan(z_map).all() and "implausibility_score_z" not in record
            continue
        assert min(thresholds) <= record["implausibility_threshold_z"] <= max(thresholds)
        assert record["implausibility_flagged"] == (record["implausibility_score_z"]
                                                    > record["implausibility_threshold_z"])
        assert record["implausibility_seconds"] > 0
        assert np.isnan(z_map[:4, :4]).all() and np.isfinite(z_map).any()  # corner: air
        assert record["implausibility_score_z"] == pytest.approx(np.nanmax(z_map), abs=1e-5)
        squared = torch.from_numpy((arrays[0] - references[record["scene"]][0])
                                   .astype(np.float64) ** 2)[None, None]
        rmse_hu = region_means(squared, REGION_PX).sqrt()[0, 0].numpy()
        detection = detection_scores(z_map[::REGION_PX, ::REGION_PX], rmse_hu)
        assert (record["implausibility_regions"], record["failed_regions"]) == (
            detection["regions"], detection["failed_regions"])
        assert math.isfinite(record["implausibility_auroc"]) == (
            0 < record["failed_regions"] < record["implausibility_regions"])
        for name, low in (("auroc", 0.0), ("spearman", -1.0)):
            value = record[f"implausibility_{name}"]
            assert math.isnan(value) or low <= value <= 1.0, (record["id"], name)
            assert value == pytest.approx(detection[name], abs=1e-6, nan_ok=True)
    records = {(r["scene"], r["photons"], r["method"]): r for r, _ in cases.values()}
    for row in _rows(out / "results.csv"):
        record = records[row["scene"], float(row["photons"]), row["method"]]
        assert row["implausibility_flagged"] == str(record["implausibility_flagged"])
        assert float(row["implausibility_score_z"]) == pytest.approx(
            record["implausibility_score_z"])


def test_a_diverged_image_gets_no_implausibility():
    op = Tomography(geometry(32, views=30))
    x = torch.full((1, 1, 32, 32), float("nan"))
    y = op.forward(torch.full((1, 1, 32, 32), 0.02))
    prox = load_prior("prox")
    z_map, fields = implausibility(x, y, op, prox, prox,
                                   load_calibration("prox", fingerprint("prox")),
                                   torch.zeros(1, 1, 32, 32))
    assert z_map.shape == (32, 32) and np.isnan(z_map).all()
    assert fields["implausibility_flagged"] is False and fields["implausibility_regions"] == 0
    assert all(math.isnan(fields[f"implausibility_{name}"])
               for name in ("score_z", "threshold_z", "auroc", "spearman"))


def test_rerun_computes_nothing(study):
    config, out, _ = study
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cases").iterdir()}
    calls: list[str] = []
    run_study(out, config, progress=lambda i, n, text: calls.append(text))
    assert len(calls) == 14 and all(text.endswith("(stored)") for text in calls)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cases").iterdir()} == before


def test_fbp_reads_insert_ct_numbers_and_noise_falls_with_dose(study):
    """Exact data + Poisson noise: at 1e5 photons FBP's inserts read their nominal HU
    (a wrong μ/HU scale or ROI would miss by hundreds), and more photons mean less noise."""
    _, out, _ = study
    inserts = [r for r in _rows(out / "inserts.csv")
               if r["method"] == "FBP" and float(r["photons"]) == 1e5]
    assert len(inserts) == 7
    for row in inserts:
        assert abs(float(row["error_hu"])) < 20.0, row
    noise = {float(r["photons"]): float(r["noise_std_hu"]) for r in _rows(out / "results.csv")
             if r["scene"] == "water_inserts" and r["method"] == "FBP"}
    assert noise[1e5] < 0.6 * noise[1e4]


@pytest.mark.parametrize(("edit", "field"), [
    (("views: 90", "views: many"), "grid.views"),
    (("source: anatomy, seed: 7001", "source: anatomy"), "scenes[0].seed"),
    (("solver: tv", "solver: sart"), "methods[1].solver"),
    (("rtol: 0.05", "rtol: -1"), "methods[1].rtol"),
    (("solver: fbp", "solver: fbp, rtol: 0.1"), "methods[0].rtol"),
    (("prior: lpn, max_iter: 2", "prior: lpn, max_iter: 2, colour: red"), "methods[2].colour"),
    (("photons: [1.0e+4, 1.0e+5]", "photons: [1.0e+4, -5]"), "photons[1]"),
    (("log_prior: {prior: prox}", "log_prior: {prior: prox}\nimplausibility: lpn"),
     "implausibility"),
])
def test_bad_config_names_file_and_field(tmp_path, edit, field):
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace(*edit))
    with pytest.raises(StudyConfigError, match=re.escape(f"bad.yaml: field '{field}'")):
        run_study(tmp_path / "out", path)
    assert not (tmp_path / "out").exists()


def test_shipped_default_config_is_valid_and_holds_out_the_training_seeds():
    config = load_config(DEFAULT_CONFIG)
    seeds = {s.seed for s in config.scenes if s.source == "anatomy"}
    assert seeds and seeds.isdisjoint({*range(32), 5001, 5002, 9001, 9002})
    assert {s.family for s in config.scenes} == {"in-family", "out-of-family", "real CT"}
    assert len(plan(config)) == len(config.scenes) * (1 + len(config.photons)
                                                      * len(config.methods))


def test_unreadable_config_names_the_file(tmp_path):
    with pytest.raises(StudyConfigError, match=re.escape(f"{tmp_path / 'missing.yaml'}: cannot")):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("grid: {size: 64\n")
    with pytest.raises(StudyConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(broken)


def test_ctpnp_study_command_resumes_and_reports_bad_configs_in_one_line(study, tmp_path):
    import subprocess
    import sys

    config, out, _ = study
    before = sorted(p.stat().st_mtime_ns for p in (out / "cases").iterdir())
    done = subprocess.run([sys.executable, "-m", "ctpnp.cli", "study", str(out), "--config",
                           str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "study.md" in done.stdout
    assert sorted(p.stat().st_mtime_ns for p in (out / "cases").iterdir()) == before
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {size: -3}\n")
    refused = subprocess.run([sys.executable, "-m", "ctpnp.cli", "study", str(tmp_path / "o"),
                              "--config", str(bad)], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 1 and "bad.yaml" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert not (tmp_path / "o").exists()


def test_flat_and_textured_anatomy_are_different_cases(tmp_path):
    """A stored case of the flat phantom is never reused for the textured one (and back)."""
    flat = tmp_path / "flat.yaml"
    flat.write_text(TINY.replace("seed: 7001}", "seed: 7001, texture: false}"))
    textured = tmp_path / "textured.yaml"
    textured.write_text(TINY)
    keys = {}
    for path in (flat, textured):
        settings = load_config(path)
        (anatomy,) = [s for s in settings.scenes if s.source == "anatomy"]
        keys[path.stem] = {case.id: case.key(settings) for case in plan(settings)
                           if case.scene is anatomy}
        assert anatomy.texture == (path is textured)
    assert keys["flat"].keys() == keys["textured"].keys()
    assert all(keys["flat"][i] != keys["textured"][i] for i in keys["flat"])


MINIMAL = """\
grid: {size: 64, pixel_mm: 0.8, views: 90}
photons: [1.0e+4]
log_prior: {prior: prox}
implausibility: prox
scenes:
  - {name: anatomy_7001, source: anatomy, seed: 7001}
methods:
  - {name: FBP, solver: fbp}
"""


@pytest.fixture
def calibration_copy(tmp_path, monkeypatch) -> Path:
    """The shipped calibrations copied to a folder the study reads them from instead."""
    folder = tmp_path / "calibration"
    shutil.copytree(indicator.CALIBRATION_DIR, folder)
    monkeypatch.setattr(indicator, "CALIBRATION_DIR", folder)
    return folder / "prox.json"


def test_a_new_calibration_recomputes_the_reconstructions(tmp_path, calibration_copy):
    """Re-calibrated (every threshold 5 higher): the stored reconstruction is stale and
    recomputed with the new threshold; the reference, which has no implausibility, is not."""
    config = tmp_path / "minimal.yaml"
    config.write_text(MINIMAL)
    run_study(tmp_path / "out", config)
    (before,) = [r for r, _ in _cases(tmp_path / "out").values() if r["method"] is not None]
    content = json.loads(calibration_copy.read_text())
    for dose in content["doses"]:
        dose["threshold_z"] += 5.0
    calibration_copy.write_text(json.dumps(content))
    calls: list[str] = []
    run_study(tmp_path / "out", config, progress=lambda i, n, text: calls.append(text))
    assert [text.endswith("(stored)") for text in calls] == [True, False]
    (after,) = [r for r, _ in _cases(tmp_path / "out").values() if r["method"] is not None]
    assert after["implausibility_threshold_z"] == pytest.approx(
        before["implausibility_threshold_z"] + 5.0)
    assert after["implausibility_score_z"] == pytest.approx(before["implausibility_score_z"])
    assert after["implausibility_flagged"] == (after["implausibility_score_z"]
                                               > after["implausibility_threshold_z"])
    assert after["key"]["implausibility"]["sha256"] == hashlib.sha256(
        calibration_copy.read_bytes()).hexdigest() != before["key"]["implausibility"]["sha256"]


def test_a_calibration_for_other_weights_is_refused_naming_the_field(tmp_path,
                                                                     calibration_copy):
    content = json.loads(calibration_copy.read_text())
    content["fingerprint"] = "0" * 64
    calibration_copy.write_text(json.dumps(content))
    config = tmp_path / "minimal.yaml"
    config.write_text(MINIMAL)
    with pytest.raises(StudyConfigError, match=r"minimal\.yaml: field 'implausibility' .*"
                       r"other weights"):
        run_study(tmp_path / "out", config)
    assert not (tmp_path / "out").exists()
