"""Reading CT image series: real pydicom test data, shuffled, mixed, compressed, Enhanced CT."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from ctpnp.io import (
    SeriesChoiceError,
    SliceGeometryError,
    axial_affine,
    list_ct_series,
    read_ct_series,
    write_ct_series,
)

DICOMDIR_TESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
CT5N = sorted((DICOMDIR_TESTS / "98892001" / "CT5N").iterdir())  # 5 axial slices, 16x16
CT2N = sorted((DICOMDIR_TESTS / "98892001" / "CT2N").iterdir())  # 2 localizers, same study
CT2 = sorted((DICOMDIR_TESTS / "77654033" / "CT2").iterdir())  # 4 slices, one far away


def _expected_ct5n() -> tuple[np.ndarray, list[str]]:
    """CT5N in HU ordered by z (the normal is +z), computed straight from pydicom."""
    datasets = sorted((pydicom.dcmread(p) for p in CT5N),
                      key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
                   for d in datasets])
    return hu.astype(np.float32), [d.SOPInstanceUID for d in datasets]


def _digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_shuffled_renamed_series_comes_back_sorted_by_position(tmp_path: Path) -> None:
    rng = random.Random(4)
    order = rng.sample(range(len(CT5N)), len(CT5N))
    numbers = rng.sample(range(1, 100), len(CT5N))
    for k, i in enumerate(order):
        ds = pydicom.dcmread(CT5N[i])
        ds.InstanceNumber = numbers[k]  # must not matter
        nested = tmp_path / f"d{k % 2}"
        nested.mkdir(exist_ok=True)
        ds.save_as(nested / f"x{rng.getrandbits(32):08x}")
    expected, uids = _expected_ct5n()
    inputs = sorted(tmp_path.rglob("x*"))
    before = _digest(inputs)

    series = read_ct_series(tmp_path)

    assert [d.SOPInstanceUID for d in series.datasets] == uids
    np.testing.assert_array_equal(series.hu, expected)
    assert series.hu.dtype == np.float32 and series.spacing_mm == (2.5, 0.488281, 0.488281)
    # slice 0 is the lowest z; RAS flips x and y of the LPS position
    np.testing.assert_allclose(series.affine[:3, 3], [72.199997, 143.0, -1.2375])
    np.testing.assert_allclose(series.affine[:3, 0], [0, 0, 2.5])
    assert _digest(inputs) == before and sorted(tmp_path.rglob("*")) == sorted(
        [*inputs, tmp_path / "d0", tmp_path / "d1"])  # inputs untouched, nothing added


def test_files_without_preamble_or_meta_are_read(tmp_path: Path) -> None:
    raw = CT5N[0].read_bytes()
    (tmp_path / "no_preamble").write_bytes(raw[132:])  # starts with group 0002
    ds = pydicom.dcmread(CT5N[1])
    del ds.file_meta  # bare data set: starts with group 0008, implicit VR
    ds.save_as(tmp_path / "no_meta", implicit_vr=True, little_endian=True,
               enforce_file_format=False)
    for path in CT5N[2:]:
        shutil.copy(path, tmp_path)
    before = _digest(sorted(tmp_path.iterdir()))
    assert read_ct_series(tmp_path).hu.shape == (5, 16, 16)
    assert _digest(sorted(tmp_path.iterdir())) == before


def test_localizers_dicomdir_and_other_files_are_skipped(tmp_path: Path) -> None:
    for path in [*CT5N, *CT2N]:
        shutil.copy(path, tmp_path / path.name)
    ds = pydicom.dcmread(CT2N[0])  # a localizer inside the axial series itself
    ds.SeriesInstanceUID = pydicom.dcmread(CT5N[0]).SeriesInstanceUID
    ds.save_as(tmp_path / "scout_same_series")
    shutil.copy(DICOMDIR_TESTS / "DICOMDIR", tmp_path / "DICOMDIR")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    (tmp_path / "notes.dcm").write_text("not DICOM at all")

    series = read_ct_series(tmp_path)

    np.testing.assert_array_equal(series.hu, _expected_ct5n()[0])
    assert len(list_ct_series(tmp_path)) == 1


def test_mixed_folder_lists_series_and_lets_caller_choose(tmp_path: Path) -> None:
    shutil.copytree(DICOMDIR_TESTS / "98892001", tmp_path / "a")
    shutil.copytree(DICOMDIR_TESTS / "77654033", tmp_path / "b")
    ct5n_uid = pydicom.dcmread(CT5N[0]).SeriesInstanceUID

    with pytest.raises(SeriesChoiceError, match="2 CT series found") as info:
        read_ct_series(tmp_path)

    assert {s.series_uid for s in info.value.series} == {
        ct5n_uid, pydicom.dcmread(CT2[0]).SeriesInstanceUID}
    assert ct5n_uid in str(info.value) and "Routine Brain" in str(info.value)
    summaries = list_ct_series(tmp_path)
    assert [s.n_slices for s in summaries] == [4, 5]
    assert read_ct_series(tmp_path, series=ct5n_uid).hu.shape == (5, 16, 16)
    assert read_ct_series(tmp_path, series=1).series_uid == ct5n_uid
    with pytest.raises(SeriesChoiceError):
        read_ct_series(tmp_path, series="1.2.3")


def test_uneven_spacing_missing_slice_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(SliceGeometryError, match="uneven slice spacing") as info:
        read_ct_series(CT2[0].parent)  # pydicom's CT2 has a 202 mm jump
    assert info.value.path in CT2
    for path in CT5N[:2] + CT5N[3:]:  # a gap in the middle
        shutil.copy(path, tmp_path)
    with pytest.raises(SliceGeometryError, match="uneven"):
        read_ct_series(tmp_path)

    shutil.copy(CT5N[2], tmp_path)
    shutil.copy(CT5N[2], tmp_path / "same_instance_again")  # a copy: counted once
    assert read_ct_series(tmp_path).hu.shape == (5, 16, 16)
    ds = pydicom.dcmread(CT5N[2])
    ds.SOPInstanceUID = generate_uid()  # a different image at the same place
    ds.save_as(tmp_path / "duplicate")
    with pytest.raises(SliceGeometryError, match="same position") as info:
        read_ct_series(tmp_path)
    assert "ImagePositionPatient (0020,0032)" in str(info.value)


def test_gantry_tilt_detected_and_optionally_kept_as_sheared_affine(tmp_path: Path) -> None:
    affine = axial_affine((4, 8, 8), (2.0, 1.0, 1.0))
    affine[1, 0] = 0.35  # each slice shifted 0.35 mm anteriorly: ~10 degrees of tilt
    hu = np.random.default_rng(0).integers(-1000, 1000, (4, 8, 8)).astype(np.float32)
    write_ct_series(hu, tmp_path / "s", affine=affine)

    with pytest.raises(SliceGeometryError, match=r"sheared by 9\.9"):
        read_ct_series(tmp_path)
    series = read_ct_series(tmp_path, allow_tilt=True)
    np.testing.assert_allclose(series.affine, affine, atol=1e-9)
    np.testing.assert_array_equal(series.hu, hu)


def _transplant(mr_name: str, geometry: Dataset, path: Path) -> None:
    """A one-slice CT file holding the (possibly compressed) pixel data of a pydicom MR file."""
    source = pydicom.dcmread(get_testdata_file(mr_name))
    ds = pydicom.dcmread(CT5N[0])
    ds.file_meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation"):
        setattr(ds, keyword, source[keyword].value)
    ds.PixelData = source.PixelData
    ds["PixelData"].VR = source["PixelData"].VR
    ds.ImagePositionPatient = geometry.ImagePositionPatient
    path.parent.mkdir()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    "name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"])
def test_compressed_pixel_data_decodes_to_the_uncompressed_values(tmp_path: Path,
                                                                  name: str) -> None:
    where = pydicom.dcmread(CT5N[0], stop_before_pixels=True)
    _transplant("MR_small.dcm", where, tmp_path / "plain" / "a")
    _transplant(name, where, tmp_path / "packed" / "a")
    plain = read_ct_series(tmp_path / "plain").hu
    assert plain.std() > 0
    np.testing.assert_array_equal(read_ct_series(tmp_path / "packed").hu, plain)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_series_compressed_with_pydicom_encoders(tmp_path: Path, syntax: str) -> None:
    hu = np.random.default_rng(1).integers(-1024, 3000, (3, 64, 64)).astype(np.float32)
    written = write_ct_series(hu, tmp_path / "plain", affine=axial_affine(hu.shape, (1, 1, 1)))
    (tmp_path / "packed").mkdir()
    for path in written:
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(tmp_path / "packed" / path.name)
    np.testing.assert_array_equal(read_ct_series(tmp_path / "packed").hu, hu)


def _enhanced_from_ct5n(order: list[int], with_localizer: bool) -> Dataset:
    """An Enhanced CT file holding CT5N's slices as frames in the given order."""
    slices = [pydicom.dcmread(p) for p in CT5N]
    first = slices[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = first.file_meta.TransferSyntaxUID
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        setattr(ds, keyword, first[keyword].value)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = first.ImageOrientationPatient
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = first.PixelSpacing
    shared.PixelMeasuresSequence[0].SliceThickness = first.SliceThickness
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    shared.PixelValueTransformationSequence[0].RescaleSlope = 1
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -1024
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, pixels = [], []
    for i in [*order, order[0]] if with_localizer else order:
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = slices[i].ImagePositionPatient
        item.CTImageFrameTypeSequence = Sequence([Dataset()])
        item.CTImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
        frames.append(item)
        pixels.append(slices[i].PixelData)
    if with_localizer:
        frames[-1].CTImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "LOCALIZER",
                                                            "NONE"]
        frames[-1].PlanePositionSequence[0].ImagePositionPatient = [0, 0, 500]
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = b"".join(pixels)
    return ds


def test_enhanced_multiframe_ct(tmp_path: Path) -> None:
    _enhanced_from_ct5n([3, 0, 4, 1, 2], with_localizer=True).save_as(tmp_path / "enh")
    series = read_ct_series(tmp_path)
    np.testing.assert_array_equal(series.hu, _expected_ct5n()[0])
    assert len(series.datasets) == 1 and series.spacing_mm == (2.5, 0.488281, 0.488281)
