"""Bad DICOM-CT-PD input: each problem is one DicomInputError naming the file and the tag."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pydicom
import pytest

from ctpnp.io import (
    DicomInputError,
    MissingTagError,
    PixelDataError,
    ProjectionGeometryError,
    UnreadableFileError,
    read_projections,
    read_scan,
    write_projections,
)
from ctpnp.scanner.acquisition import Acquisition

N_VIEWS = 6


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory):
    """A small helical scan: 6 views, 2 rows, 8 channels, photon statistics."""
    return _written(tmp_path_factory.mktemp("pd") / "scan", seed=0, n_views=N_VIEWS,
                    views_per_turn=4, n_rows=2, n_channels=8, feed_mm_per_turn=3.0,
                    photons=np.full((N_VIEWS, 8), 1e5, np.float32))


def _written(folder, seed: int, **geometry):
    """``folder`` holding random post-log data of ``Acquisition.uniform(**geometry)``
    (4 mm channels, 2 mm rows)."""
    acquisition = Acquisition.uniform(channel_spacing_mm=4.0, row_spacing_mm=2.0, **geometry)
    shape = (acquisition.n_views, acquisition.n_rows, acquisition.n_channels)
    write_projections(np.random.default_rng(seed).uniform(0, 4, shape), acquisition, folder)
    return folder


@pytest.fixture
def scan(scan_dir, tmp_path):
    copy = tmp_path / "scan"
    shutil.copytree(scan_dir, copy)
    return copy


def _edit(path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


REQUIRED = {
    0x70291010: "NumberofDetectorRows", 0x70291011: "NumberofDetectorColumns",
    0x70291002: "DetectorElementTransverseSpacing", 0x70291006: "DetectorElementAxialSpacing",
    0x7029100B: "DetectorShape", 0x70311001: "DetectorFocalCenterAngularPosition",
    0x70311002: "DetectorFocalCenterAxialPosition", 0x70311003:
    "DetectorFocalCenterRadialDistance", 0x70311031: "ConstantRadialDistance",
    0x70311033: "DetectorCentralElement", 0x70331013: "NumberofSourceAngularSteps",
    0x70371009: "TypeofProjectionData", 0x70411001: "WaterAttenuationCoefficient",
    0x00281053: "RescaleSlope", 0x00200013: "InstanceNumber",
}


@pytest.mark.parametrize("tag", list(REQUIRED), ids=list(REQUIRED.values()))
def test_missing_geometry_tag_names_file_and_tag(scan, tag):
    target = scan / "PD000003.dcm"
    _edit(target, lambda ds: ds.__delitem__(tag))
    with pytest.raises(MissingTagError) as error:
        read_projections(scan)
    assert error.value.path == target
    assert REQUIRED[tag] in error.value.field


@pytest.mark.parametrize(("tag", "value", "message"), [
    (0x7029100B, "SPHERICAL", "expected one of"),
    (0x70291002, -1.0, "positive"),
    (0x70311033, [4.5], "2"),
    (0x70391009, "NO", "expected one of"),
    (0x70411001, "12", "attenuation of water"),
    (0x70331065, [1.0, 2.0], "expected 1 or 8"),
])
def test_bad_tag_values_name_the_tag(scan, tag, value, message):
    target = scan / "PD000002.dcm"
    _edit(target, lambda ds: setattr(ds[tag], "value", value))
    with pytest.raises(MissingTagError, match=message) as error:
        read_projections(scan)
    assert error.value.path == target and f"{tag >> 16:04X},{tag & 0xFFFF:04X}" in \
        error.value.field


def test_truncated_pixel_data(scan):
    target = scan / "PD000004.dcm"
    _edit(target, lambda ds: setattr(ds, "PixelData", ds.PixelData[:-6]))
    with pytest.raises(PixelDataError) as error:
        read_projections(scan)
    assert error.value.path == target and "PixelData" in error.value.field


def test_image_size_must_match_detector(scan):
    _edit(scan / "PD000001.dcm", lambda ds: setattr(ds[0x70291011], "value", 9))
    with pytest.raises(DicomInputError, match="Rows"):
        read_projections(scan)


def test_inconsistent_per_view_geometry(scan):
    target = scan / "PD000005.dcm"
    _edit(target, lambda ds: setattr(ds[0x70311031], "value", 1000.0))
    with pytest.raises(ProjectionGeometryError, match="different scans") as error:
        read_projections(scan)
    assert error.value.path == target and "ConstantRadialDistance" in error.value.field


def test_angles_and_positions_must_move_one_way(scan):
    target = scan / "PD000004.dcm"
    _edit(target, lambda ds: setattr(ds[0x70311002], "value", -50.0))
    with pytest.raises(ProjectionGeometryError) as error:
        read_projections(scan)
    assert error.value.path == target and "AxialPosition" in error.value.field
    _edit(target, lambda ds: setattr(ds[0x70311002], "value", 100.0))
    with pytest.raises(ProjectionGeometryError):
        read_projections(scan)


def test_mixed_scans_and_duplicate_views(scan, scan_dir, tmp_path):
    other = tmp_path / "other"
    geometry = Acquisition.uniform(n_views=2, views_per_turn=4, n_rows=2, n_channels=8,
                                   channel_spacing_mm=4.0, row_spacing_mm=2.0)
    write_projections(np.zeros((2, 2, 8)), geometry, other)
    shutil.copy(other / "PD000001.dcm", scan / "axial.dcm")
    _edit(scan / "axial.dcm", lambda ds: setattr(ds, "InstanceNumber", 99))
    with pytest.raises(ProjectionGeometryError, match="different scans"):
        read_projections(scan)
    (scan / "axial.dcm").unlink()
    shutil.copy(scan_dir / "PD000002.dcm", scan / "again.dcm")
    with pytest.raises(ProjectionGeometryError, match="same place") as error:
        read_projections(scan)
    assert "InstanceNumber" in error.value.field


def test_empty_folder_and_not_a_folder(tmp_path):
    with pytest.raises(DicomInputError, match="no DICOM-CT-PD"):
        read_projections(tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(DicomInputError, match="is not a folder"):
        read_projections(tmp_path / "notes.txt")


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_unreadable_file(scan):
    (scan / "PD000003.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    with pytest.raises(UnreadableFileError):
        read_projections(scan)


def test_fuzzed_files_give_only_dicom_input_errors(scan_dir, tmp_path):
    """160 seeded corruptions (truncate, flip bytes, drop a tag) of one view each."""
    rng = np.random.default_rng(2024)
    originals = {p.name: p.read_bytes() for p in sorted(scan_dir.iterdir())}
    tags = [elem.tag for elem in pydicom.dcmread(scan_dir / "PD000001.dcm")]
    outcomes = {"read": 0, "error": 0}
    folder = tmp_path / "fuzz"
    shutil.copytree(scan_dir, folder)
    for case in range(160):
        name = sorted(originals)[rng.integers(len(originals))]
        raw = bytearray(originals[name])
        kind = case % 3
        if kind == 0:
            raw = raw[: rng.integers(0, len(raw))]
        elif kind == 1:
            for offset in rng.integers(0, len(raw), size=rng.integers(1, 12)):
                raw[offset] ^= int(rng.integers(1, 256))
        (folder / name).write_bytes(bytes(raw))
        if kind == 2:
            _edit(folder / name, lambda ds: ds.__delitem__(tags[rng.integers(len(tags))]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns about the damaged values
                read_projections(folder)
            outcomes["read"] += 1
        except DicomInputError as error:
            assert error.path is not None
            outcomes["error"] += 1
        (folder / name).write_bytes(originals[name])
    assert outcomes["error"] > 80, outcomes


# --------------------------------------------------------------------------- plausibility
AXIAL_VIEWS = 24


@pytest.fixture(scope="module")
def axial_dir(tmp_path_factory):
    """A one-row axial scan of a full turn: 24 views of 24 channels."""
    return _written(tmp_path_factory.mktemp("axial") / "scan", seed=1, n_views=AXIAL_VIEWS,
                    views_per_turn=AXIAL_VIEWS, n_rows=1, n_channels=24)


@pytest.fixture
def axial(axial_dir, tmp_path):
    return shutil.copytree(axial_dir, tmp_path / "axial")


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("drop", ["PD000001.dcm", "PD000024.dcm"], ids=["first", "last"])
def test_missing_view_at_either_end_is_a_warning_naming_file_and_tag(axial, drop):
    """A full-turn scan missing its first or last view used to reconstruct without a word."""
    assert read_scan(axial).warnings == ()
    (axial / drop).unlink()
    before = _snapshot(axial)
    scan = read_scan(axial)
    (warning,) = scan.warnings
    first = "PD000002.dcm" if drop == "PD000001.dcm" else "PD000001.dcm"
    assert warning.startswith(f"{axial / first}: DetectorFocalCenterAngularPosition (7031,1001)")
    assert "1 view(s) short of a full turn" in warning and "\n" not in warning
    assert scan.sinograms.shape[1] == AXIAL_VIEWS - 1 and _snapshot(axial) == before


def test_too_few_views_are_refused_naming_file_and_tag(axial):
    for path in sorted(axial.iterdir())[2:]:
        path.unlink()
    with pytest.raises(DicomInputError, match="at least 16") as error:
        read_scan(axial)
    assert error.value.path == axial / "PD000001.dcm"
    assert "DetectorFocalCenterAngularPosition" in error.value.field


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("RescaleSlope", -1.0, "not positive"),
    ("RescaleIntercept", 1e308, "beyond"),
])
def test_implausible_rescale_of_a_view_names_file_and_tag(axial, keyword, value, message):
    target = axial / "PD000007.dcm"
    _edit(target, lambda ds: setattr(ds, keyword, value))
    with pytest.raises(MissingTagError, match=message) as error:
        read_scan(axial)
    assert error.value.path == target and keyword in error.value.field


def test_fuzzed_scans_give_a_scan_or_one_error_and_stay_untouched(axial_dir, tmp_path):
    """Seeded plausibility cases through read_scan: views dropped at the ends or thinned
    out, phi reversed, water as FL, slopes and intercepts absurd. Each run ends in a scan
    (with warnings where soft) or one DicomInputError naming a file; inputs never change."""
    rng = np.random.default_rng(7)
    outcomes: dict[str, int] = {}
    for case in range(40):
        folder = tmp_path / f"case{case}"
        shutil.copytree(axial_dir, folder)
        names = sorted(p.name for p in folder.iterdir())
        kind = case % 5
        if kind == 0:  # views missing at the ends
            for name in names[: rng.integers(0, 3)] + names[len(names) - rng.integers(0, 3):]:
                (folder / name).unlink()
        elif kind == 1:  # most views missing
            for name in names[rng.integers(2, 15):]:
                (folder / name).unlink()
        elif kind == 2:  # clockwise: phi reversed
            for name in names:
                _edit(folder / name, lambda ds: setattr(ds[0x70311001], "value",
                                                        -ds[0x70311001].value))
        elif kind == 3:  # water as FL
            for name in names:
                _edit(folder / name, lambda ds: ds.add_new(0x70411001, "FL", 0.0192))
        else:  # absurd rescale on one view
            keyword = ("RescaleSlope", "RescaleIntercept")[int(rng.integers(2))]
            value = float(rng.choice([-1.0, 0.0, 1e7, 1e308, -1e308]))
            _edit(folder / names[int(rng.integers(len(names)))],
                  lambda ds, k=keyword, v=value: setattr(ds, k, v))
        before = _snapshot(folder)
        try:
            scan = read_scan(folder)
            outcome = "warned" if scan.warnings else "read"
        except DicomInputError as error:
            assert error.path is not None and str(folder) in str(error.path), error
            outcome = type(error).__name__
        assert _snapshot(folder) == before
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("read", 0) >= 10 and outcomes.get("warned", 0) >= 3, outcomes
    assert sum(v for k, v in outcomes.items() if k.endswith("Error")) >= 10, outcomes
