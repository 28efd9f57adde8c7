"""DICOM-CT-PD projection data: round trips, private-tag decoding, geometry and orientation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.uid import ImplicitVRLittleEndian

from ctpnp import Tomography
from ctpnp.io import axial_affine, read_projections, write_projections
from ctpnp.phantoms import cylindrical_detector_rays, from_mapping
from ctpnp.physics import mu_to_hu
from ctpnp.scanner.acquisition import Acquisition, AcquisitionFieldError

SMALL = dict(views_per_turn=24, n_rows=4, n_channels=24, channel_spacing_mm=4.0,
             row_spacing_mm=2.2)


def _same_geometry(a: Acquisition, b: Acquisition) -> None:
    for item in dataclasses.fields(Acquisition):
        x, y = getattr(a, item.name), getattr(b, item.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None and np.array_equal(x, y), item.name
        else:
            assert x == y, item.name


def _scan(kind: str, detector: str, **kwargs) -> Acquisition:
    feed = 0.0 if kind == "axial" else 6.5
    n_views = 24 if kind == "axial" else 60
    return Acquisition.uniform(n_views=n_views, feed_mm_per_turn=feed, detector=detector,
                               first_view_angle_rad=0.3, first_z_mm=-12.25, **SMALL, **kwargs)


def _data(geometry: Acquisition, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (geometry.n_views, geometry.n_rows, geometry.n_channels)
    return rng.uniform(0.0, 6.0, shape)


@pytest.mark.parametrize("detector", ["cylindrical", "flat"])
@pytest.mark.parametrize("kind", ["axial", "helical"])
def test_round_trip_preserves_data_within_quantisation_and_geometry_exactly(
        tmp_path, kind, detector):
    extra = {}
    if kind == "helical":
        n_views = 60
        sign = np.where(np.arange(n_views) % 2, 1.0, -1.0)
        extra = dict(flying_focal_spot="FFSXYZ",
                     source_angle_shift_rad=np.float32(1e-3) * sign,
                     source_z_shift_mm=np.float32(0.3) * sign,
                     source_radial_shift_mm=np.float32(0.5) * sign,
                     photons=np.full((n_views, SMALL["n_channels"]), 2.5e5, np.float32))
    geometry = _scan(kind, detector, **extra)
    data = _data(geometry)
    files = write_projections(data, geometry, tmp_path / "scan")
    assert [f.name for f in files] == [f"PD{i:06d}.dcm" for i in range(1, geometry.n_views + 1)]
    assert sorted(p.name for p in (tmp_path / "scan").iterdir()) == [f.name for f in files]
    back = read_projections(tmp_path / "scan")
    _same_geometry(back.geometry, geometry)
    assert back.data.dtype == np.float32 and back.data.shape == data.shape
    slopes = np.array([float(ds.RescaleSlope) for ds in back.datasets])
    error = np.abs(back.data - data).reshape(len(slopes), -1).max(axis=1)
    assert np.all(error <= 0.5 * slopes + 1e-6 * data.max())
    assert slopes.max() < 1e-4
    assert [p.name for p in back.paths] == [f.name for f in files]
    assert "PixelData" not in back.datasets[0]


def test_implicit_vr_files_with_raw_private_bytes_read_the_same(tmp_path):
    """Private elements of an implicit-VR file come as raw bytes (VR UN) and are decoded."""
    geometry = _scan("helical", "cylindrical")
    data = _data(geometry, 1)
    write_projections(data, geometry, tmp_path / "explicit")
    (tmp_path / "implicit").mkdir()
    for path in sorted((tmp_path / "explicit").iterdir()):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(tmp_path / "implicit" / path.name, implicit_vr=True, little_endian=True)
    raw = pydicom.dcmread(tmp_path / "implicit" / "PD000001.dcm")
    assert raw[0x70311001].VR == "UN" and isinstance(raw[0x70311001].value, bytes)
    explicit, implicit = read_projections(tmp_path / "explicit"), read_projections(
        tmp_path / "implicit")
    _same_geometry(implicit.geometry, explicit.geometry)
    np.testing.assert_array_equal(implicit.data, explicit.data)


def test_wrapped_angles_are_unwrapped_and_older_conventions_are_understood(tmp_path):
    """phi wrapped to [0, 2 pi) reads back continuous; mu_water per cm becomes per mm;
    an FFSZ file using the older swapped names of (7033,100B)/(7033,100C) reads as z shifts."""
    n_views = 60
    shift = np.float32(0.4) * np.where(np.arange(n_views) % 2, 1.0, -1.0)
    geometry = _scan("helical", "flat", flying_focal_spot="FFSZ", source_z_shift_mm=shift)
    write_projections(_data(geometry), geometry, tmp_path / "scan")
    for path in sorted((tmp_path / "scan").iterdir()):
        ds = pydicom.dcmread(path)
        ds[0x70311001].value = float(np.float32(np.mod(ds[0x70311001].value, 2 * math.pi)))
        ds[0x7033100B].value, ds[0x7033100C].value = ds[0x7033100C].value, 0.0
        ds[0x70411001].value = "0.192"
        ds.save_as(path)
    back = read_projections(tmp_path / "scan").geometry
    np.testing.assert_allclose(back.focal_angles_rad, geometry.focal_angles_rad, atol=2e-6)
    np.testing.assert_array_equal(back.source_z_shift_mm, geometry.source_z_shift_mm)
    assert not back.source_angle_shift_rad.any()
    assert back.mu_water_per_mm == pytest.approx(0.0192)


def test_rays_agree_with_the_phantom_helical_helper_and_move_with_the_focal_spot():
    geometry = _scan("helical", "cylindrical")
    starts, directions = geometry.rays()
    assert starts.shape == directions.shape == (60, 4, 24, 3)
    ref_starts, ref_directions = cylindrical_detector_rays(
        geometry.view_angles_rad, geometry.focal_z_mm, geometry.channel_positions_mm,
        geometry.row_positions_mm, source_isocenter_mm=geometry.source_isocenter_mm,
        source_detector_mm=geometry.source_detector_mm)
    np.testing.assert_allclose(starts, ref_starts, atol=1e-9)
    np.testing.assert_allclose(directions, ref_directions, atol=1e-12)
    shifted = dataclasses.replace(geometry, source_z_shift_mm=np.full(60, 0.5),
                                  source_radial_shift_mm=np.full(60, 2.0))
    moved, moved_directions = shifted.rays()
    np.testing.assert_allclose(moved[..., 2] - starts[..., 2], 0.5)
    np.testing.assert_allclose(np.hypot(moved[..., 0], moved[..., 1]),
                               geometry.source_isocenter_mm + 2.0)
    # The detector stays put: each ray still ends on its element.
    element = starts + directions * _reach(starts, directions, geometry)
    moved_reach = _reach(moved, moved_directions, geometry, element)
    np.testing.assert_allclose(moved + moved_directions * moved_reach, element, atol=1e-9)


def _reach(starts, directions, geometry, element=None):
    """Distance along each ray to its detector element (to the given points when known)."""
    if element is not None:
        return np.linalg.norm(element - starts, axis=-1, keepdims=True)
    d_in_plane = np.linalg.norm(directions[..., :2], axis=-1, keepdims=True)
    return geometry.source_detector_mm / d_in_plane


def test_source_follows_the_dicom_ct_pd_angle_convention():
    """phi = 0: source at 12 o'clock (anterior, -axis 0); phi = pi/2: patient right (-axis 1)."""
    geometry = Acquisition.uniform(n_views=4, first_view_angle_rad=-math.pi / 2,
                                   **{**SMALL, "views_per_turn": 4})
    np.testing.assert_allclose(geometry.focal_angles_rad, [0, math.pi / 2, math.pi,
                                                           3 * math.pi / 2], atol=1e-6)
    source = geometry.source_positions_mm()[:, :2] / geometry.source_isocenter_mm
    np.testing.assert_allclose(source, [[-1, 0], [0, -1], [1, 0], [0, 1]], atol=1e-6)


def test_orientation_left_anterior_insert_lands_where_the_image_series_puts_it(tmp_path):
    """A small insert at the patient's left (LPS x = +40 mm) and anterior (LPS y = -60 mm).

    Raw data: in the view with the source at 12 o'clock (anterior), channels run towards
    the patient's right, so the insert's shadow lies on channels below the centre. FBP of
    the data read back, mapped through the standard axial affine of the image series,
    puts the insert at RAS (-40, +60), i.e. left and anterior.
    """
    phantom = from_mapping({"name": "asymmetric", "shapes": [
        {"type": "ellipse", "center": [0, 0], "axes": [90, 90], "hu": 1000},
        {"type": "ellipse", "center": [40, 60], "axes": [8, 6], "hu": 1500},
    ]})
    geometry = Acquisition.uniform(n_views=180, views_per_turn=180, n_rows=1, n_channels=160,
                                   channel_spacing_mm=2.4, row_spacing_mm=2.0,
                                   first_view_angle_rad=-math.pi / 2)
    insert_only = from_mapping({"name": "insert", "shapes": [
        {"type": "ellipse", "center": [40, 60], "axes": [8, 6], "hu": 1000}]})
    first_view = insert_only.line_integrals(*(r[:1] for r in geometry.rays()))[0, 0]
    assert abs(geometry.focal_angles_rad[0]) < 1e-6
    assert np.argmax(first_view) < (geometry.n_channels - 1) / 2
    write_projections(phantom.line_integrals(*geometry.rays()), geometry, tmp_path / "scan")
    scan = read_projections(tmp_path / "scan")
    grid, pixel_mm = (128, 128), 1.6
    sinogram = scan.data[:, scan.geometry.central_row_index]
    tomo = Tomography(scan.geometry.fan_geometry(grid, pixel_mm))
    hu = mu_to_hu(tomo.fbp(torch.from_numpy(sinogram)[None, None]))[0, 0].numpy()
    i, j = np.unravel_index(np.argmax(hu), hu.shape)
    ras = axial_affine((1, *grid), (1.0, pixel_mm, pixel_mm)) @ np.array([0, i, j, 1.0])
    np.testing.assert_allclose(ras[:2], [-40.0, 60.0], atol=2 * pixel_mm)


def test_fan_geometry_of_an_axial_scan_and_refusals():
    axial = _scan("axial", "flat")
    fan = axial.fan_geometry((64, 64), 1.0)
    np.testing.assert_allclose(fan.angles_rad, axial.view_angles_rad, atol=1e-6)
    np.testing.assert_allclose(fan.channel_positions_mm, axial.channel_positions_mm)
    assert fan.detector == "flat" and fan.angular_range_rad == pytest.approx(2 * math.pi)
    with pytest.raises(AcquisitionFieldError, match="scan_type"):
        _scan("helical", "flat").fan_geometry((64, 64), 1.0)
    with pytest.raises(AcquisitionFieldError, match="source_angle_shift_rad"):
        dataclasses.replace(axial, source_angle_shift_rad=np.full(24, 1e-3)).fan_geometry(
            (64, 64), 1.0)


@pytest.mark.parametrize(("change", "field"), [
    ({"detector": "spherical"}, "detector"),
    ({"n_rows": 0}, "n_rows"),
    ({"channel_spacing_mm": -1.0}, "channel_spacing_mm"),
    ({"source_detector_mm": 500.0}, "source_detector_mm"),
    ({"focal_z_mm": np.linspace(0, 1, 24)}, "focal_z_mm"),
    ({"focal_angles_rad": np.full(24, np.nan)}, "focal_angles_rad"),
    ({"photons": np.zeros((24, 24))}, "photons"),
    ({"source_z_shift_mm": np.zeros(3)}, "source_z_shift_mm"),
])
def test_invalid_acquisition_names_field_and_value(change, field):
    with pytest.raises(ValueError, match=f"Acquisition.{field}=") as error:
        dataclasses.replace(_scan("axial", "flat"), **change)
    assert error.value.field == field


def test_writer_refuses_wrong_shapes_and_existing_output(tmp_path):
    geometry = _scan("axial", "flat")
    with pytest.raises(ValueError, match="shape"):
        write_projections(np.zeros((3, 4, 24)), geometry, tmp_path / "a")
    with pytest.raises(ValueError, match="finite"):
        write_projections(np.full((24, 4, 24), np.nan), geometry, tmp_path / "b")
    (tmp_path / "c").mkdir()
    Path(tmp_path / "c" / "keep").write_text("x")
    with pytest.raises(FileExistsError):
        write_projections(_data(geometry), geometry, tmp_path / "c")
    assert not list(tmp_path.glob(".*partial"))
