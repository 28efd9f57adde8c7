"""Writing derived CT series, float maps and NIfTI; round trips and dciodvfy."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy.spatial.transform import Rotation

from ctpnp.atomic import staged_dir
from ctpnp.io import (
    CTSeries,
    axial_affine,
    read_ct_series,
    read_pydicom_slice,
    write_ct_series,
    write_map_series,
    write_nifti,
)
from ctpnp.io.affine import affine_from_planes

CT5N_DIR = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


@pytest.fixture(scope="module")
def source() -> CTSeries:
    return read_ct_series(CT5N_DIR)


def _volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1024.0, 2500.0, shape)


def test_round_trip_axial_is_exact_in_geometry_and_within_half_hu(tmp_path: Path) -> None:
    hu = _volume((6, 20, 24))
    affine = axial_affine(hu.shape, (1.25, 0.75, 0.5))
    files = write_ct_series(hu, tmp_path / "out", affine=affine)
    assert [f.name for f in files] == [f"IM{k:05d}.dcm" for k in range(1, 7)]

    back = read_ct_series(tmp_path / "out")

    np.testing.assert_array_equal(back.affine, affine)
    assert back.spacing_mm == (1.25, 0.75, 0.5)
    assert np.abs(back.hu - hu).max() <= 0.5 + 1e-3


def test_round_trip_oblique_geometry(tmp_path: Path) -> None:
    rotation = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    affine = affine_from_planes([-101.3, 57.25, 812.5], rotation[:, 0], rotation[:, 1],
                                (0.7, 0.9), rotation[:, 2] * -3.0)  # step against the normal
    hu = _volume((5, 8, 9), seed=1)
    write_ct_series(hu, tmp_path / "out", affine=affine)

    back = read_ct_series(tmp_path / "out")

    # the reader orders slices along +normal: the same voxels, slice axis reversed
    flipped = affine @ np.array([[-1, 0, 0, 4], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(back.affine, flipped, atol=1e-6)
    assert np.abs(back.hu - hu[::-1]).max() <= 0.5 + 1e-3


def test_derived_series_copies_patient_study_and_frame_of_reference(
    tmp_path: Path, source: CTSeries
) -> None:
    files = write_ct_series(source.hu + 3.2, tmp_path / "out", like=source,
                            description="PnP 25% dose",
                            derivation="ctpnp pnp-admm; prior=prox-net; dose=25%; iters=50")
    src, out = source.datasets[0], pydicom.dcmread(files[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID",
                    "StudyDate", "AccessionNumber"):
        assert out[keyword].value == src[keyword].value, keyword
    assert out.SeriesInstanceUID != src.SeriesInstanceUID
    assert out.SOPInstanceUID not in {d.SOPInstanceUID for d in source.datasets}
    assert list(out.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert "dose=25%" in out.DerivationDescription and out.SeriesDescription == "PnP 25% dose"
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert float(out.SliceThickness) == 2.5 and float(out.RescaleSlope) == 1.0

    back = read_ct_series(tmp_path / "out")
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-9)
    assert np.abs(back.hu - (source.hu + 3.2)).max() <= 0.5 + 1e-3


def test_float_map_as_dicom_overlay_and_nifti(tmp_path: Path, source: CTSeries) -> None:
    log_lik = np.random.default_rng(2).normal(-3.0, 0.05, source.hu.shape)
    write_map_series(log_lik, tmp_path / "map", like=source, derivation="log p(x) of prior")

    back = read_ct_series(tmp_path / "map")
    slope = float(back.datasets[0].RescaleSlope)
    assert slope < 1e-5  # the fitted slope resolves the map's small range
    assert np.abs(back.hu - log_lik).max() <= slope / 2 + 1e-6
    assert back.datasets[0].FrameOfReferenceUID == source.datasets[0].FrameOfReferenceUID
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-9)

    path = write_nifti(log_lik, source.affine, tmp_path / "map.nii.gz", description="log p")
    image = nib.load(path)
    np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0),
                                  log_lik.astype(np.float32))


def test_map_overlays_the_series_it_was_computed_on(tmp_path: Path) -> None:
    hu = _volume((3, 12, 10))
    affine = axial_affine(hu.shape, (2.0, 0.5, 0.5))
    written = [pydicom.dcmread(f) for f in write_ct_series(hu, tmp_path / "ct", affine=affine)]
    maps = write_map_series(hu / 1000.0, tmp_path / "map", affine=affine, overlay_on=written)
    for ct, overlay in zip(written, map(pydicom.dcmread, maps), strict=True):
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID"):
            assert overlay[keyword].value == ct[keyword].value, keyword
        assert overlay.SeriesInstanceUID != ct.SeriesInstanceUID
        (source,) = overlay.SourceImageSequence
        assert source.ReferencedSOPInstanceUID == ct.SOPInstanceUID
    with pytest.raises(ValueError, match="overlay_on has 2 slices, the map 3"):
        write_map_series(hu, tmp_path / "bad", affine=affine, overlay_on=written[:2])
    assert not (tmp_path / "bad").exists()


def test_nifti_affine_is_ras_mm(tmp_path: Path, source: CTSeries) -> None:
    image = nib.load(write_nifti(source.hu, source.affine, tmp_path / "ct.nii"))
    assert image.header.get_xyzt_units()[0] == "mm"
    assert image.header.get_sform(coded=True)[1] == 1 and image.header["qform_code"] == 1
    # CT5N: rows go anterior->posterior, columns right->left, slices up: RAS codes L, P, S
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    # the world position of the last voxel equals DICOM's (LPS) with x and y negated
    last = pydicom.dcmread(source.files[-1])
    ipp = np.array(last.ImagePositionPatient, dtype=float)
    corner = ipp + 15 * np.array(last.ImageOrientationPatient[:3], dtype=float) * 0.488281 \
        + 15 * np.array(last.ImageOrientationPatient[3:], dtype=float) * 0.488281
    np.testing.assert_allclose(image.affine @ [15, 15, 4, 1], [*(corner * [-1, -1, 1]), 1],
                               atol=1e-4)
    np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), source.hu)


def test_output_is_never_partial_or_overwritten(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_ct_series(_volume((2, 4, 4)), occupied, affine=axial_affine((2, 4, 4), (1, 1, 1)))
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]

    with pytest.raises(RuntimeError), staged_dir(tmp_path / "series") as staging:
        (staging / "IM00001.dcm").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]

    with pytest.raises(ValueError, match="finite"):
        write_ct_series(np.full((1, 4, 4), np.nan), tmp_path / "nan",
                        affine=axial_affine((1, 4, 4), (1, 1, 1)))
    assert not (tmp_path / "nan").exists()


def test_a_folder_another_writer_filled_meanwhile_is_left_as_it_is(tmp_path: Path) -> None:
    final = tmp_path / "series"
    with pytest.raises(FileExistsError, match="another writer"), staged_dir(final) as staging:
        (staging / "mine.dcm").write_bytes(b"mine")
        final.mkdir()
        (final / "theirs.dcm").write_bytes(b"theirs")
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
    assert [p.name for p in final.iterdir()] == ["theirs.dcm"]


def test_laterality_is_copied_never_made_up(tmp_path: Path, source: CTSeries) -> None:
    """Laterality is Type 2C (paired body parts only): an output from a source naming an
    unpaired body part must not carry it, even empty; one from a source with it keeps the
    source's value; with no body part known (this source, no source) it is empty (unknown)."""
    assert all("Laterality" not in ds and "BodyPartExamined" not in ds for ds in source.datasets)
    derived = write_ct_series(source.hu, tmp_path / "like", like=source)
    bare = write_ct_series(_volume((1, 8, 8)), tmp_path / "bare",
                           affine=axial_affine((1, 8, 8), (1, 1, 1)))
    for path in (*derived, *bare):
        assert pydicom.dcmread(path, stop_before_pixels=True).Laterality == "", path
    abdomen = pydicom.Dataset()
    abdomen.BodyPartExamined = "ABDOMEN"
    named = write_ct_series(source.hu, tmp_path / "named", like=source, identity=abdomen)
    assert "Laterality" not in pydicom.dcmread(named[0], stop_before_pixels=True)
    with_laterality = read_pydicom_slice()  # CT_small.dcm carries an (empty) Laterality
    assert "Laterality" in with_laterality.datasets[0]
    written = write_ct_series(with_laterality.hu, tmp_path / "kept", like=with_laterality)
    assert (pydicom.dcmread(written[0], stop_before_pixels=True).Laterality
            == with_laterality.datasets[0].Laterality)


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return {re.sub(r"\s+", " ", line) for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy not installed (Debian/Ubuntu package: dicom3tools)")
def test_outputs_pass_dciodvfy(tmp_path: Path, source: CTSeries) -> None:
    source_errors = set().union(*(_dciodvfy_errors(p) for p in source.files))
    written = [
        *write_ct_series(source.hu, tmp_path / "like", like=source, derivation="ctpnp test"),
        *write_map_series(source.hu / 1000, tmp_path / "map", like=source),
        *write_ct_series(_volume((2, 8, 8)), tmp_path / "bare",
                         affine=axial_affine((2, 8, 8), (1, 1, 1))),
    ]
    for path in written:
        assert _dciodvfy_errors(path) <= source_errors, path
    assert _dciodvfy_errors(written[-1]) == set()  # no source to blame at all
