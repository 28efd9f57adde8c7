"""The phantom validation study on a tiny configuration: tables, resume, errors, physics."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from ctpnp.apps.study import DEFAULT_CONFIG, StudyConfigError, load_config, run_study
from ctpnp.apps.study.run import plan
from ctpnp.priors.registry import fingerprint

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
    for figure in ("quality_vs_dose", "convergence", "hu_accuracy", "noise_vs_dose", "montage",
                   "log_prior_vs_error"):
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
    assert lpn_case["priors"] == {"lpn": fingerprint("lpn"), "prox": fingerprint("prox")}
    assert all(key["priors"].keys() >= {"prox"} for key in keys.values())  # the log prior


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
