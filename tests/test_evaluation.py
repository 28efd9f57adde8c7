"""Choosing settings on validation rows: the shipped choices are reproduced, bad pools refused."""

import json
from pathlib import Path

import pytest
import torch

from ctpnp.evaluation import best_per_dose, markdown_table, pooled

RESULTS = Path(__file__).parents[1] / "pipelines" / "calibrate" / "results"


@pytest.mark.parametrize(("name", "setting", "choice"), [
    ("tune_pnp_prox_256_converged", ("sigma_hu", "data_scale"), "chosen"),
    ("tune_pnp_lpn_256_validation", ("sigma_hu", "data_scale"), "chosen"),
    ("tune_tv_256_converged", ("c (mm)",), "best"),
])
def test_the_shipped_choices_follow_from_their_rows(name, setting, choice):
    record = json.loads((RESULTS / f"{name}.json").read_text())
    assert best_per_dose(record["rows"], setting) == record[choice]


def _row(dose: str, seed: int, c: float, psnr: float) -> dict:
    return {"dose": dose, "seed": seed, "variance": 1e-4, "c": c, "psnr_full_db": psnr}


def test_only_settings_run_on_every_scan_compete():
    rows = [_row("low", 1, 50.0, 40.0), _row("low", 2, 50.0, 30.0), _row("low", 1, 100.0, 45.0)]
    best = best_per_dose(rows, ("c",))
    assert best["low"]["c"] == 50.0 and best["low"]["psnr_full_db"] == 35.0
    assert best["low"]["scans"] == ["1", "2"]
    with pytest.raises(ValueError, match="no setting was run on every scan"):
        best_per_dose([_row("low", 1, 50.0, 1.0), _row("low", 2, 100.0, 1.0)], ("c",))


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
