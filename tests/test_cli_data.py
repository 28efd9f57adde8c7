"""``ctpnp data``: the real-CT corpus from the command line (no network: a generated cache)."""

import numpy as np

from ctpnp.cli import main
from ctpnp.data import SOURCES
from ctpnp.data.cache import write_patient


def _cache(folder, patient: str, hu: np.ndarray) -> None:
    """A cache entry as ``fetch`` writes it (the archive's digest marks it as fetched)."""
    write_patient(hu, {"patient": patient, "anatomy": "test", "licence": "none",
                       "pixel_mm": 0.5, "slice_mm": 5.0, "voxel_assumed": False,
                       "shape": list(hu.shape), "sha256": SOURCES[patient].archive.sha256,
                       "hu_min": float(hu.min()), "hu_max": float(hu.max())}, folder)


def test_list_shows_every_patient_its_split_licence_and_what_is_cached(tmp_path, capsys):
    _cache(tmp_path, "lung2", np.full((2, 8, 8), 40, dtype=np.int16))
    assert main(["data", "list", "--cache", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cache: {tmp_path}"
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(SOURCES)
    assert "validation" in rows["lung2"] and "cached (2, 8, 8), HU 40..40" in rows["lung2"]
    assert "train" in rows["lung1"] and "not fetched" in rows["lung1"]
    assert SOURCES["cranium"].archive.licence in rows["cranium"]


def test_fetch_of_an_unknown_patient_is_one_line_and_caches_nothing(tmp_path, capsys):
    assert main(["data", "fetch", "nobody", "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody" in err[0] and "lung1" in err[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_fetch_of_a_cached_patient_downloads_nothing(tmp_path, capsys):
    hu = np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8)
    _cache(tmp_path, "head_ge", hu)
    assert main(["data", "fetch", "head_ge", "--cache", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "in the cache" in captured.err
    assert captured.out.splitlines()[0].startswith("head_ge       (2, 8, 8)")
