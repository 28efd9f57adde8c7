"""DICOM-CT-PD as the public archives and their readers have it, written independently of
ctpnp's writer (pydicom only, implicit VR, private tags as raw bytes), read by ctpnp.

The geometry of the writer below is the one helix2fan's reader (TCIA
LDCT-and-Projection-data, docs/dicom-ct-pd-conventions.md) implies, in the patient
frame (LPS, mm): focal spot at ``rho * (-sin phi, -cos phi)``, channels increasing
along ``(-cos phi, sin phi)``, rows stored towards decreasing ``z0``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

from ctpnp import ScanGeometry, Tomography
from ctpnp.apps.reconstruct import reconstruct_scan
from ctpnp.io import axial_affine, read_projections, read_scan
from ctpnp.phantoms import from_mapping, load
from ctpnp.physics import mu_to_hu
from ctpnp.quality import psnr_hu

RHO_MM, SOURCE_DETECTOR_MM = 595.0, 1085.6
ASYMMETRIC = {"name": "asymmetric", "shapes": [
    {"type": "ellipse", "center": [0, 0], "axes": [90, 90], "hu": 1000},
    {"type": "ellipse", "center": [40, 60], "axes": [8, 6], "hu": 1500},
]}
"""A disc with an insert at the patient's left (LPS x = +40 mm) and anterior (y = -60 mm)."""


def archive_rays(phi: np.ndarray, z0: np.ndarray, n_rows: int, n_channels: int,
                 channel_mm: float, row_mm: float, central: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Source points and unit directions ``(views, rows, channels, 3)`` in ctpnp's image frame
    ``(LPS y, LPS x, z)`` of every stored detector element, cylindrical detector."""
    p = phi[:, None, None]
    source_lps = RHO_MM * np.stack([-np.sin(p), -np.cos(p)])         # (2, V, 1, 1)
    central_ray = -source_lps / RHO_MM
    channel_axis = np.stack([-np.cos(p), np.sin(p)])
    gamma = (np.arange(n_channels) + 1 - central[0]) * channel_mm / SOURCE_DETECTOR_MM
    v = -(np.arange(n_rows) + 1 - central[1]) * row_mm                 # rows towards -z0
    element = source_lps + SOURCE_DETECTOR_MM * (np.cos(gamma) * central_ray
                                                 + np.sin(gamma) * channel_axis)
    shape = (len(phi), n_rows, n_channels)
    z_source = np.broadcast_to(z0[:, None, None], shape)
    start = np.stack([np.broadcast_to(source_lps[1], shape), np.broadcast_to(source_lps[0], shape),
                      z_source], axis=-1)
    end = np.stack([np.broadcast_to(element[1], shape), np.broadcast_to(element[0], shape),
                    z_source + v[None, :, None]], axis=-1)
    direction = end - start
    return start, direction / np.linalg.norm(direction, axis=-1, keepdims=True)


def _private(ds: Dataset, tag: int, value: bytes) -> None:
    ds.add_new(tag, "UN", value + (b"\x00" if len(value) % 2 else b""))


def write_archive_scan(folder: Path, views: np.ndarray, phi: np.ndarray, z0: np.ndarray, *,
                       channel_mm: float, row_mm: float, central: tuple[float, float],
                       views_per_turn: int, water: bytes = b"0.0192") -> list[Path]:
    """One implicit-VR file per view: Rows = channels, Columns = rows (stored towards -z0),
    FL/US private values as raw bytes, WaterAttenuationCoefficient as given (DS text default)."""
    folder.mkdir(parents=True)
    n_views, n_rows, n_channels = views.shape
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(n_views):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.PatientName, ds.PatientID, ds.PatientPosition = "Archive^Case", "L067", "HFS"
        ds.StudyDate, ds.StudyTime, ds.KVP = "20201010", "101010", "120"
        ds.Manufacturer, ds.BodyPartExamined = "SIEMENS", "ABDOMEN"
        ds.Rows, ds.Columns = n_channels, n_rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        slope = max(float(views[k].max()), 1e-3) / 60000
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.8g}", "0"
        ds.PixelData = np.round(views[k].T / float(f"{slope:.8g}")).astype("<u2").tobytes()
        fl = lambda *x: struct.pack(f"<{len(x)}f", *x)  # noqa: E731
        us = lambda x: struct.pack("<H", x)  # noqa: E731
        for tag, value in {
            0x70291010: us(n_rows), 0x70291011: us(n_channels), 0x70291002: fl(channel_mm),
            0x70291006: fl(row_mm), 0x7029100B: b"CYLINDRICAL ", 0x70311001: fl(phi[k]),
            0x70311002: fl(z0[k]), 0x70311003: fl(RHO_MM), 0x70311031: fl(SOURCE_DETECTOR_MM),
            0x70311033: fl(*central), 0x7033100B: fl(0.0), 0x7033100C: fl(0.0),
            0x7033100D: fl(0.0), 0x7033100E: b"FFSNONE ", 0x70331013: us(views_per_turn),
            0x70371009: b"AXIAL " if np.ptp(z0) == 0 else b"HELICAL ",
            0x7037100A: b"FANBEAM ", 0x70391009: b"YES ", 0x70411001: water,
        }.items():
            _private(ds, tag, value)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        paths.append(folder / f"{k:06d}.dcm")
        ds.save_as(paths[-1], implicit_vr=True, little_endian=True, enforce_file_format=True)
    return paths


AXIAL = dict(n_rows=1, n_channels=160, channel_mm=2.4, row_mm=2.0, central=(80.5, 1.0))


def _axial_scan(folder: Path, *, clockwise: bool = False, water: bytes = b"0.0192",
                drop: slice = slice(None)) -> list[Path]:
    n = 180
    step = 2 * math.pi / n
    phi = (np.arange(n) * step if not clockwise else -np.arange(n) * step)[drop]
    phi = np.float32(phi).astype(np.float64)
    z0 = np.zeros_like(phi)
    geometry = {k: AXIAL[k] for k in ("n_rows", "n_channels", "channel_mm", "row_mm", "central")}
    views = from_mapping(ASYMMETRIC).line_integrals(*archive_rays(phi, z0, **geometry))
    return write_archive_scan(folder, views, phi, z0, channel_mm=AXIAL["channel_mm"],
                              row_mm=AXIAL["row_mm"], central=AXIAL["central"],
                              views_per_turn=n, water=water)


def _insert_ras(folder: Path) -> np.ndarray:
    """RAS (mm) of the brightest pixel of the FBP of the axial scan in ``folder``."""
    scan = read_scan(folder)
    grid, pixel_mm = (128, 128), 1.6
    tomo = Tomography(scan.geometry(grid, pixel_mm))
    mu = tomo.fbp(torch.from_numpy(scan.sinograms[:1])[:, None])
    hu = mu_to_hu(mu, scan.acquisition.mu_water_per_mm)[0, 0].numpy()
    i, j = np.unravel_index(np.argmax(hu), hu.shape)
    return (axial_affine((1, *grid), (1.0, pixel_mm, pixel_mm)) @ np.array([0, i, j, 1.0]))[:2]


@pytest.mark.parametrize("clockwise", [False, True], ids=["phi increasing", "phi decreasing"])
def test_archive_axial_scan_reconstructs_upright_whichever_way_phi_runs(tmp_path, clockwise):
    """The insert comes out at the patient's left and anterior (RAS -40, +60), neither
    transposed (+60, -40) nor mirrored (+40, +60); a clockwise scan used to be refused."""
    _axial_scan(tmp_path / "scan", clockwise=clockwise)
    np.testing.assert_allclose(_insert_ras(tmp_path / "scan"), [-40.0, 60.0], atol=3.2)


def test_water_attenuation_as_fl_bytes_is_read_and_reported(tmp_path):
    """(7041,1001) written as FL (4 raw bytes in an implicit-VR file) used to be refused
    as undecodable DS; it is read, and value_types says FL (DS for the text form)."""
    _axial_scan(tmp_path / "fl", water=struct.pack("<f", 0.0192))
    fl = read_projections(tmp_path / "fl")
    assert fl.geometry.mu_water_per_mm == pytest.approx(0.0192, rel=1e-6)
    assert fl.value_types["WaterAttenuationCoefficient (7041,1001)"] == "FL"
    assert fl.value_types["DetectorFocalCenterAngularPosition (7031,1001)"] == "FL"
    ds = read_scan(tmp_path / "fl").value_types
    assert ds["WaterAttenuationCoefficient (7041,1001)"] == "FL"
    _axial_scan(tmp_path / "ds")
    assert read_projections(tmp_path / "ds").value_types[
        "WaterAttenuationCoefficient (7041,1001)"] == "DS"


def test_archive_helical_scan_rows_run_against_z0(tmp_path):
    """Exact line integrals of the 3D Shepp-Logan along a 2-turn, 8-row helix stored as the
    archives store rows (towards decreasing z0): the rebinned slices match the phantom
    (measured 26.4 to 27.5 dB, FBP on 3.2 mm pixels). Read with rows towards +z, as ctpnp
    did before, the same files scored 22.8 to 24.9 dB."""
    phantom = load("shepp_logan_3d")
    grid, pixel_mm, per_turn, rows = (64, 64), 3.2, 120, 8
    clinical = ScanGeometry.clinical_fan(grid, pixel_mm, per_turn)
    row_mm = 2.4 * SOURCE_DETECTOR_MM / RHO_MM
    feed = rows * 2.4
    turns = np.arange(2 * per_turn) / per_turn
    phi = np.float32(2 * math.pi * turns).astype(np.float64)
    z0 = np.float32(25.0 - feed + feed * turns).astype(np.float64)
    central = ((clinical.n_channels + 1) / 2, 3.9)  # off-centre row: the row order matters
    views = phantom.line_integrals(*archive_rays(phi, z0, rows, clinical.n_channels,
                                                 clinical.channel_spacing_mm, row_mm, central))
    write_archive_scan(tmp_path / "helix", views, phi, z0,
                       channel_mm=clinical.channel_spacing_mm, row_mm=row_mm, central=central,
                       views_per_turn=per_turn)
    scan = read_scan(tmp_path / "helix")
    assert scan.layout == "helical" and len(scan.z_mm) > 1
    tomo = Tomography(scan.geometry(grid, pixel_mm))
    mu = tomo.fbp(torch.from_numpy(scan.sinograms)[:, None])
    hu = mu_to_hu(mu, scan.acquisition.mu_water_per_mm)
    for k, z in enumerate(scan.z_mm):
        truth = torch.from_numpy(phantom.rasterize(clinical, z_mm=float(z)))[None, None]
        assert psnr_hu(hu[k:k + 1], truth).item() >= 25.5, z


def _dciodvfy(path: Path) -> tuple[set[str], set[str]]:
    """dciodvfy's (errors, warnings) of one file, whitespace normalised."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = {re.sub(r"\s+", " ", line) for line in (done.stdout + done.stderr).splitlines()}
    return ({x for x in lines if x.startswith("Error")},
            {x for x in lines if x.startswith("Warning")})


def test_reconstruction_joins_the_raw_datas_study_or_is_anonymized(tmp_path):
    """Patient, study, dates, kVp and position come from the raw header (the output used
    to start a new, empty study); new series/instance UIDs, DERIVED, the source named."""
    views = _axial_scan(tmp_path / "scan")
    raw = pydicom.dcmread(views[0], stop_before_pixels=True)
    report = reconstruct_scan(tmp_path / "scan", tmp_path / "joined", method="fbp")
    out = pydicom.dcmread(sorted((tmp_path / "joined" / "dicom").iterdir())[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime",
                    "KVP", "PatientPosition", "BodyPartExamined"):
        assert str(out.get(keyword)) == str(raw.get(keyword)), keyword
    assert out.SeriesInstanceUID != raw.SeriesInstanceUID
    assert out.SOPInstanceUID != raw.SOPInstanceUID and out.ImageType[0] == "DERIVED"
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == raw.SOPInstanceUID
    assert json.loads(report.files[-1].read_text())["anonymized"] is False

    reconstruct_scan(tmp_path / "scan", tmp_path / "anonymous", method="fbp", anonymize=True)
    anonymous = pydicom.dcmread(sorted((tmp_path / "anonymous" / "dicom").iterdir())[0])
    assert anonymous.PatientName == "" and re.fullmatch("ANON-[0-9A-F]{12}", anonymous.PatientID)
    assert anonymous.StudyInstanceUID != raw.StudyInstanceUID
    assert anonymous.StudyDate != raw.StudyDate
    assert (anonymous.KVP, anonymous.PatientPosition) == (raw.KVP, raw.PatientPosition)
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian/Ubuntu package: dicom3tools)")
    _, raw_warnings = _dciodvfy(views[0])
    for folder in ("joined", "anonymous"):
        errors, warnings = _dciodvfy(sorted((tmp_path / folder / "dicom").iterdir())[0])
        assert errors == set(), folder
        assert warnings <= raw_warnings, (folder, warnings - raw_warnings)
