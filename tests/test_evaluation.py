"""Choosing settings on validation rows: the shipped choices are reproduced, bad pools refused."""

import json
import math
from pathlib import Path

import pytest
import torch

from ctpnp.evaluation import (
    best_interpolated,
    best_per_dose,
    markdown_table,
    means_against,
    pooled,
)
from ctpnp.quality import QUALITY_COLUMNS

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "pipelines" / "calibrate" / "results"
WEIGHTS = ROOT / "ctpnp" / "priors" / "weights"
TV_RULE = ROOT / "ctpnp" / "solvers" / "tv_weight.json"


@pytest.mark.parametrize(("name", "setting", "choice"), [
    ("tune_pnp_prox_256_converged", ("sigma_hu", "data_scale"), "chosen"),
    ("tune_pnp_lpn_256_validation", ("sigma_hu", "data_scale"), "chosen"),
    ("tune_pnp_gmm_256", ("sigma_hu", "data_scale"), "chosen"),
    ("tune_tv_256_converged", ("c (mm)",), "best"),
])
def test_the_shipped_choices_follow_from_their_rows(name, setting, choice):
    record = json.loads((RESULTS / f"{name}.json").read_text())
    chosen = best_per_dose(record["rows"], setting,
                           settled_first=record.get("settled_first", False))
    assert chosen == record[choice]


def test_weights_are_compared_by_their_means_per_dose_against_the_reference():
    def row(weights, dose, psnr):
        return {"weights": weights, "dose": dose, **dict.fromkeys(QUALITY_COLUMNS, psnr)}

    rows = [row("ref", "low", 30.0), row("ref", "low", 32.0), row("new", "low", 33.0),
            row("new", "low", 34.0), row("ref", "high", 40.0), row("new", "high", 39.0)]
    table = {(r["weights"], r["dose"]): r for r in means_against(rows, "ref")}
    assert table[("new", "low")]["psnr_full_db"] == 33.5
    assert table[("new", "low")]["delta_psnr_full_db"] == 2.5
    assert table[("new", "high")]["delta_ssim_soft"] == -1.0
    assert table[("ref", "high")]["delta_rmse_hu"] == 0.0


@pytest.mark.parametrize("photons", ["1e4", "1e5"])
def test_the_recorded_weights_comparisons_follow_from_their_rows(photons):
    record = json.loads((RESULTS / f"compare_weights_256_jfb_{photons}.json").read_text())
    assert record["summary"] == means_against(record["rows"], record["reference"])
    assert {r["scan"] for r in record["rows"]}.isdisjoint({"693_J2KI.dcm"})  # a test slice


@pytest.mark.parametrize("prior", ["prox", "lpn", "gmm"])
def test_the_shipped_pnp_rules_are_those_fitted_through_the_validation_grids(prior):
    fitted = json.loads((RESULTS / f"fit_rules_pnp_{prior}.json").read_text())
    card = json.loads((WEIGHTS / f"{prior}.json").read_text())["pnp_parameters"]["pnp-admm"]
    assert {key: card[key] for key in fitted["rule"]} == fitted["rule"]
    assert card["training"]["files"] == fitted["files"]


def test_the_shipped_tv_rule_is_the_one_fitted_through_the_validation_grids():
    fitted = json.loads((RESULTS / "fit_rules_tv.json").read_text())
    shipped = json.loads(TV_RULE.read_text())
    assert {key: shipped[key] for key in fitted["rule"]} == fitted["rule"]
    assert shipped["fitted_in"] == "fit_rules_tv.json"


def _row(dose: str, seed: int, c: float, psnr: float) -> dict:
    return {"dose": dose, "seed": seed, "variance": 1e-4, "c": c, "psnr_full_db": psnr}


def test_only_settings_run_on_every_scan_compete():
    rows = [_row("low", 1, 50.0, 40.0), _row("low", 2, 50.0, 30.0), _row("low", 1, 100.0, 45.0)]
    best = best_per_dose(rows, ("c",))
    assert best["low"]["c"] == 50.0 and best["low"]["psnr_full_db"] == 35.0
    assert best["low"]["scans"] == ["1", "2"]
    with pytest.raises(ValueError, match="no setting was run on every scan"):
        best_per_dose([_row("low", 1, 50.0, 1.0), _row("low", 2, 100.0, 1.0)], ("c",))


def test_a_setting_that_ran_into_the_cap_is_chosen_only_when_none_settled():
    def row(seed, c, psnr, converged):
        return {**_row("low", seed, c, psnr), "converged": converged}

    rows = [row(1, 50.0, 35.0, True), row(2, 50.0, 35.0, True),
            row(1, 100.0, 36.0, True), row(2, 100.0, 36.0, False)]
    assert best_per_dose(rows, ("c",), settled_first=True)["low"]["c"] == 50.0
    assert best_per_dose(rows, ("c",))["low"]["c"] == 100.0
    unsettled = [dict(r, converged=False) for r in rows]
    assert best_per_dose(unsettled, ("c",), settled_first=True)["low"]["c"] == 100.0


def _curve(seed: int, shift: float, sigma_hu: float | None = None) -> list[dict]:
    """A scan's rows at log settings 0, 1, 2, 3 relative to its own noise, peaked at
    ``1.5 + shift`` (a tent of slope 1, height 40 dB)."""
    return [{"seed": seed, "setting": x + shift, "variance": 1e-4 * (seed + 1),
             "sigma_hu": sigma_hu, "psnr_full_db": 40.0 - abs(x - 1.5)}
            for x in (0.0, 1.0, 2.0, 3.0)]


def test_interpolated_choice_pools_scans_run_at_shifted_settings():
    # two scans whose grids, relative to their noise, are shifted by 0.5: peaks at
    # 1.5 and 2.0, so the mean peaks between them inside the common range [0.5, 3]
    best = best_interpolated(_curve(0, 0.0) + _curve(1, 0.5))
    assert 1.5 <= math.log(best["setting"]) <= 2.0
    assert best["psnr_full_db"] == pytest.approx(39.5)  # both interpolants are flat there
    assert not best["on_edge"] and best["scans"] == ["0", "1"]
    assert best["variance"] == pytest.approx(1.5e-4)
    # per denoiser strength: the better strength wins; one run on a single scan is out
    rows = _curve(0, 0.0, 50.0) + _curve(1, 0.0, 50.0)
    rows += [{**r, "sigma_hu": 100.0, "psnr_full_db": r["psnr_full_db"] + 1.0}
             for r in _curve(0, 0.0)]
    assert best_interpolated(rows)["sigma_hu"] == 50.0
    # a score still rising at the end of the common range: the best is on its edge
    rising = [{**r, "psnr_full_db": 30.0 + r["setting"]} for r in _curve(0, 0.0) + _curve(1, 0.5)]
    assert best_interpolated(rising)["on_edge"]
    assert math.log(best_interpolated(rising)["setting"]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="every scan"):
        best_interpolated(_curve(0, 0.0) + _curve(1, 10.0))
    # strengths run at one common setting: the better mean wins, on the edge of its point
    at_one = [{**r, "sigma_hu": s, "psnr_full_db": r["psnr_full_db"] + bonus}
              for s, bonus in ((50.0, 0.0), (100.0, 0.7))
              for r in _curve(0, 0.0) + _curve(1, 0.0) if r["setting"] == 1.0]
    one = best_interpolated(at_one)
    assert one["sigma_hu"] == 100.0 and one["on_edge"] and math.log(one["setting"]) == 1.0
    assert one["psnr_full_db"] == pytest.approx(39.5 + 0.7)  # both scans read 39.5 at 1


def test_pooling_joins_earlier_rows_once_and_refuses_other_settings(tmp_path):
    earlier = tmp_path / "earlier.json"
    rows = [_row("low", 1, 50.0, 40.0)]
    earlier.write_text(json.dumps({"size": 64, "views": 90, "rows": rows}))
    assert pooled(rows, [earlier, earlier], size=64, views=90) == rows
    with pytest.raises(ValueError, match=r"earlier.json: size is 64, this run's is 32"):
        pooled(rows, [earlier], size=32, views=90)
    with pytest.raises(ValueError, match=r"earlier.json: no 'iterations' recorded"):
        pooled(rows, [earlier], size=64, views=90, iterations=15)


def test_markdown_table_aligns_columns():
    lines = markdown_table([{"a": 1.23456, "bb": "x"}, {"a": 10.0, "bb": "long"}]).splitlines()
    assert lines[0] == "| a    | bb   |" and lines[2] == "| 1.23 | x    |"
    assert len({len(line) for line in lines}) == 1


def test_corpus_validation_slices_are_read_from_the_cache_clamped_and_resampled(tmp_path,
                                                                                monkeypatch):
    import numpy as np

    from ctpnp.data import SPLITS
    from ctpnp.data.cache import write_patient
    from ctpnp.evaluation import REAL_CT_SLICES, real_ct_reference_hu

    corpus = [name for name in REAL_CT_SLICES if "/" in name]
    assert corpus and all(name.split("/")[0] in SPLITS["validation"] for name in corpus)
    hu = np.full((41, 8, 8), -2000, dtype=np.int16)  # outside the field of view everywhere
    hu[20, :4] = 100  # slice 20: top half tissue
    monkeypatch.setenv("CTPNP_DATA", str(tmp_path))
    write_patient(hu, {"patient": "lung2", "shape": list(hu.shape), "sha256": "x",
                       "pixel_mm": 0.6, "slice_mm": 5.0, "anatomy": "test", "licence": "none",
                       "voxel_assumed": False}, tmp_path)
    image = real_ct_reference_hu("lung2/20", 4)
    assert image.shape == (1, 1, 4, 4)
    assert torch.equal(image[0, 0, :2], torch.full((2, 4), 100.0))
    assert torch.equal(image[0, 0, 2:], torch.full((2, 4), -1000.0))  # padding became air


def test_interpolated_choice_can_prefer_settled_points():
    rows = _curve(0, 0.0) + _curve(1, 0.5)
    # the stronger data weights ran into the iteration cap on one scan
    rows = [{**r, "converged": not (r["seed"] == 1 and r["setting"] >= 2.0)} for r in rows]
    assert not best_interpolated(rows)["on_edge"]
    settled = best_interpolated(rows, settled_first=True)
    assert settled["settled"] and settled["variance"] == pytest.approx(1.5e-4)
    assert math.log(settled["setting"]) == pytest.approx(1.5) and settled["on_edge"]
    # nothing settled on one scan: the choice falls back to every row
    none = [{**r, "converged": r["seed"] == 0} for r in rows]
    assert "settled" not in best_interpolated(none, settled_first=True)
