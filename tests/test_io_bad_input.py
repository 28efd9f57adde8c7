"""Bad input: every problem is one DicomInputError naming the file and what is wrong."""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import MPEG4HP41, JPEG2000Lossless, RLELossless

from ctpnp.io import (
    DicomInputError,
    MissingCodecError,
    MissingTagError,
    NoCTSeriesError,
    PixelDataError,
    SeriesChoiceError,
    UnreadableFileError,
    axial_affine,
    read_ct_series,
    write_ct_series,
)

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
CT5N = sorted((TEST_FILES / "dicomdirtests" / "98892001" / "CT5N").iterdir())


@pytest.fixture
def ct5n(tmp_path: Path) -> Path:
    folder = tmp_path / "ct5n"
    folder.mkdir()
    for path in CT5N:
        shutil.copy(path, folder / path.name)
    return folder


def _rewrite(path: Path, edit) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


def test_empty_folder_and_folder_without_ct(tmp_path: Path) -> None:
    with pytest.raises(NoCTSeriesError, match="no CT image series found among 0 files"):
        read_ct_series(tmp_path)
    for name in ("MR_small.dcm", "rtplan.dcm", "test-SR.dcm"):
        shutil.copy(TEST_FILES / name, tmp_path)
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", tmp_path)
    (tmp_path / "README").write_text("hello")
    with pytest.raises(NoCTSeriesError) as info:
        read_ct_series(tmp_path)
    assert "1 DICOMDIR, 1 not DICOM, 3 not a CT image" in str(info.value)
    with pytest.raises(DicomInputError, match="is not a folder"):
        read_ct_series(tmp_path / "README")


def test_only_localizers_is_no_ct_series(tmp_path: Path) -> None:
    for path in (TEST_FILES / "dicomdirtests" / "98892001" / "CT2N").iterdir():
        shutil.copy(path, tmp_path)
    with pytest.raises(NoCTSeriesError, match="2 localizer"):
        read_ct_series(tmp_path)


def test_several_series_without_choice(tmp_path: Path) -> None:
    shutil.copytree(TEST_FILES / "dicomdirtests", tmp_path / "all")
    with pytest.raises(SeriesChoiceError, match="choose one with series="):
        read_ct_series(tmp_path)


@pytest.mark.parametrize(
    ("keyword", "field"),
    [("ImagePositionPatient", "(0020,0032)"), ("ImageOrientationPatient", "(0020,0037)"),
     ("PixelSpacing", "(0028,0030)"), ("RescaleSlope", "(0028,1053)"),
     ("SeriesInstanceUID", "(0020,000E)")],
)
def test_missing_geometry_or_rescale_tag_names_file_and_tag(ct5n: Path, keyword: str,
                                                            field: str) -> None:
    victim = ct5n / CT5N[2].name
    _rewrite(victim, lambda ds: delattr(ds, keyword))
    with pytest.raises(MissingTagError) as info:
        read_ct_series(ct5n)
    assert info.value.path == victim and field in str(info.value)
    assert "missing" in str(info.value)


def test_malformed_geometry_values(ct5n: Path) -> None:
    def bad(ds: pydicom.Dataset) -> None:
        ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    _rewrite(ct5n / CT5N[0].name, bad)
    with pytest.raises(MissingTagError, match="not two orthogonal unit vectors"):
        read_ct_series(ct5n)


def test_truncated_pixel_data(ct5n: Path) -> None:
    victim = ct5n / CT5N[1].name
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(PixelDataError) as info:
        read_ct_series(ct5n)
    assert info.value.path == victim and "PixelData (7FE0,0010)" in str(info.value)


def _compressed_series(folder: Path, syntax: str, n_slices: int = 3) -> list[Path]:
    hu = np.random.default_rng(3).integers(-1000, 1500, (n_slices, 64, 64)).astype(np.float32)
    files = write_ct_series(hu, folder, affine=axial_affine(hu.shape, (2, 1, 1)))
    for path in files:
        _rewrite(path, lambda ds: ds.compress(syntax))
    return files


def test_undecodable_compressed_pixel_data(tmp_path: Path) -> None:
    files = _compressed_series(tmp_path / "j2k", JPEG2000Lossless)

    def cut(ds: pydicom.Dataset) -> None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = encapsulate([frame[: len(frame) // 4]])
    _rewrite(files[1], cut)
    with pytest.raises(PixelDataError, match="cannot be decoded") as info:
        read_ct_series(tmp_path)
    assert info.value.path == files[1]


@pytest.mark.parametrize("syntax", [MPEG4HP41, "1.2.3.4.5.6"])
def test_compressed_syntax_without_codec(ct5n: Path, syntax: str) -> None:
    victim = ct5n / CT5N[3].name

    def relabel(ds: pydicom.Dataset) -> None:
        ds.PixelData = encapsulate([ds.PixelData])
        ds.file_meta.TransferSyntaxUID = syntax
    ds = pydicom.dcmread(victim)
    relabel(ds)
    ds.save_as(victim, enforce_file_format=False)
    with pytest.raises(MissingCodecError) as info:
        read_ct_series(ct5n)
    message = str(info.value)
    assert info.value.path == victim and "TransferSyntaxUID (0002,0010)" in message
    assert syntax in message and "decoder" in message


def test_damaged_header_is_unreadable_file_error(ct5n: Path) -> None:
    victim = ct5n / CT5N[0].name
    victim.write_bytes(victim.read_bytes()[:200])  # cut inside the data set
    with pytest.raises(UnreadableFileError, match="truncated") as info:
        read_ct_series(ct5n)
    assert info.value.path == victim


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """Truncate, flip bytes or drop a random range of bytes (e.g. whole elements)."""
    kind = rng.randrange(3)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind == 1:
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(132, len(out)) if rng.random() < 0.9 else rng.randrange(len(out))] \
                = rng.randrange(256)
        return bytes(out)
    start = rng.randrange(132, len(data))
    return data[:start] + data[start + rng.randint(1, 64):]


def _drop_tag(path: Path, rng: random.Random) -> bytes:
    ds = pydicom.dcmread(path)
    del ds[rng.choice([e.tag for e in ds])]
    target = path.with_name("dropped")
    ds.save_as(target, enforce_file_format=False)
    data = target.read_bytes()
    target.unlink()
    return data


def test_fuzzed_inputs_raise_only_dicom_input_errors(tmp_path: Path) -> None:
    bases = {"native": tmp_path / "native", "rle": tmp_path / "rle", "j2k": tmp_path / "j2k"}
    bases["native"].mkdir()
    for path in CT5N[1:3]:  # two neighbouring scanner slices
        shutil.copy(path, bases["native"])
    _compressed_series(bases["rle"], RLELossless, n_slices=2)
    _compressed_series(bases["j2k"], JPEG2000Lossless, n_slices=2)
    rng = random.Random(20240604)
    outcomes: dict[str, int] = {}
    for case in range(300):
        folder = bases[("native", "rle", "j2k")[case % 3]]
        victim = rng.choice(sorted(p for p in folder.iterdir()))
        original = victim.read_bytes()
        mutated = _drop_tag(victim, rng) if case % 5 == 4 else _mutate(original, rng)
        victim.write_bytes(mutated)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                series = read_ct_series(folder)
            assert series.hu.ndim == 3 and series.hu.dtype == np.float32
            outcome = "read"
        except DicomInputError as error:
            assert error.path is not None, error
            outcome = type(error).__name__
        finally:  # the next case starts from intact files
            victim.write_bytes(original)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 300
    # the loop exercised both paths and several kinds of error
    assert outcomes.get("read", 0) > 20 and len(outcomes) >= 4, outcomes
    assert outcomes.get("UnreadableFileError", 0) > 10 and outcomes.get("PixelDataError", 0) > 10


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("RescaleSlope", -1.0, "not positive"),
    ("RescaleSlope", 0.0, "not positive"),
    ("RescaleSlope", 1e308, "beyond"),
    ("RescaleIntercept", 1e308, "beyond"),
    ("PixelSpacing", [1e308, 1e308], "between 0.05 and 10"),
    ("PixelSpacing", [0.01, 0.01], "between 0.05 and 10"),
    ("PixelSpacing", [12.0, 12.0], "between 0.05 and 10"),
])
def test_implausible_values_are_one_error_naming_file_and_tag(ct5n: Path, keyword: str,
                                                              value: object,
                                                              message: str) -> None:
    """An inverted image (negative slope) and absurd scales or spacings used to pass
    read_ct_series (and fail later, naming no file); now one line names file and tag."""
    victim = ct5n / CT5N[1].name
    originals = {p.name: p.read_bytes() for p in ct5n.iterdir()}
    _rewrite(victim, lambda ds: setattr(ds, keyword, value))
    originals[victim.name] = victim.read_bytes()
    with pytest.raises(MissingTagError, match=message) as info:
        read_ct_series(ct5n)
    assert info.value.path == victim and keyword in info.value.field
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in ct5n.iterdir()} == originals  # input untouched


def test_fuzzed_implausible_headers_raise_only_dicom_input_errors(ct5n: Path) -> None:
    """Seeded implausible rescale and spacing values on random slices: a read or one error
    naming the file; never another exception; the files are never modified by the read."""
    rng = random.Random(2026)
    choices = [("RescaleSlope", [-1.0, 0.0, -1e-9, 1e7, 1e308, 2.0, 1e-3]),
               ("RescaleIntercept", [1e308, -1e308, -1e7, -1024.0, 1e5]),
               ("PixelSpacing", [[1e308, 1e308], [0.0, 0.7], [0.05, 0.05], [9.9, 9.9],
                                 [10.0, 1.0], [0.7, 0.7]])]
    outcomes = {"read": 0, "error": 0}
    for _ in range(60):
        victim = rng.choice(sorted(ct5n.iterdir()))
        keyword, values = rng.choice(choices)
        value = rng.choice(values)
        original = victim.read_bytes()
        _rewrite(victim, lambda ds, k=keyword, v=value: setattr(ds, k, v))
        changed = victim.read_bytes()
        try:
            read_ct_series(ct5n)
            outcomes["read"] += 1
        except SeriesChoiceError:  # a plausible but different spacing splits the stack
            outcomes["split"] = outcomes.get("split", 0) + 1
        except DicomInputError as error:
            assert error.path == victim and keyword in error.field, error
            outcomes["error"] += 1
        finally:
            assert victim.read_bytes() == changed  # the reader never writes
            victim.write_bytes(original)
    assert outcomes["read"] > 5 and outcomes["error"] > 20, outcomes
