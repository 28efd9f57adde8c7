"""ScanGeometry: validation, clinical defaults and agreement of its rays with ODL's geometry."""

import math

import numpy as np
import odl
import pytest
from odl.applications import tomo

from ctpnp import ScanGeometry
from ctpnp.scanner.geometry import CLINICAL


def fan(**overrides):
    values = dict(kind="fan", image_shape=(64, 64), pixel_mm=1.0, n_views=90, n_channels=100,
                  channel_spacing_mm=1.5, source_isocenter_mm=500.0, source_detector_mm=900.0)
    values.update(overrides)
    return ScanGeometry(**values)


@pytest.mark.parametrize(("field", "value"), [
    ("n_views", 0), ("n_channels", -3), ("pixel_mm", float("nan")), ("channel_spacing_mm", 0.0),
    ("source_isocenter_mm", -1.0), ("source_detector_mm", 400.0), ("angular_range_rad", 7.0),
    ("kind", "cone"), ("detector", "spherical"), ("image_shape", (0, 64)),
    ("source_isocenter_mm", 40.0),
])
def test_invalid_values_name_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"ScanGeometry\.{field}={value!r}".replace("(", r"\(")
                       .replace(")", r"\)")):
        fan(**{field: value})


def test_parallel_rejects_fan_settings():
    with pytest.raises(ValueError, match="source_isocenter_mm"):
        ScanGeometry.parallel((32, 32), 1.0, 30, source_isocenter_mm=500.0)


def test_clinical_fan_matches_the_clinical_scanner_at_its_native_grid():
    g = ScanGeometry.clinical_fan((512, 512), CLINICAL.pixel_mm_at_isocenter)
    assert g.source_isocenter_mm == 595.0 and g.source_detector_mm == 1085.6
    assert g.channel_spacing_mm == pytest.approx(1.2858)
    assert g.n_views == 1152 and g.detector == "curved"
    # the fan covers the circle around the 510 mm grid diagonal; the clinical 736
    # channels cover 502 mm
    assert abs(g.n_channels - 736) / 736 < 0.025
    half_fan = np.abs(g.fan_angles_rad).max()
    assert g.source_isocenter_mm * math.sin(half_fan) >= g.image_radius_mm


def test_clinical_fan_scales_with_the_grid():
    coarse = ScanGeometry.clinical_fan((256, 256), 2.0, 360)
    fine = ScanGeometry.clinical_fan((512, 512), 1.0, 360)
    assert coarse.channel_spacing_mm == pytest.approx(2 * fine.channel_spacing_mm)
    assert abs(2 * coarse.n_channels - fine.n_channels) <= 2


def _odl_geometry(g: ScanGeometry):
    apart = odl.uniform_partition(g.angle_start_rad, g.angle_start_rad + g.angular_range_rad,
                                  g.n_views)
    u, s = g.channel_positions_mm, g.channel_spacing_mm
    dpart = odl.uniform_partition(u[0] - s / 2, u[-1] + s / 2, g.n_channels)
    if g.kind == "parallel":
        return tomo.Parallel2dGeometry(apart, dpart)
    return tomo.FanBeamGeometry(apart, dpart, src_radius=g.source_isocenter_mm,
                                det_radius=g.source_detector_mm - g.source_isocenter_mm)


@pytest.mark.parametrize("geometry", [
    ScanGeometry.parallel((64, 64), 1.0, 45, channel_offset_mm=0.3, angle_start_rad=0.2),
    fan(detector="flat", channel_offset_mm=-2.0, angle_start_rad=-1.0),
], ids=["parallel", "fan-flat"])
def test_rays_agree_with_odl_geometry(geometry):
    starts, directions = geometry.rays()
    reference = _odl_geometry(geometry)
    u = reference.det_partition.meshgrid[0]
    for view in (0, 7, geometry.n_views - 1):
        angle = reference.angles[view]
        for channel in (0, 31, geometry.n_channels - 1):
            detector_point = reference.det_point_position(angle, u[channel])
            to_source = reference.det_to_src(angle, u[channel])
            np.testing.assert_allclose(directions[view, channel, :2], -to_source, atol=1e-12)
            # the ray through `starts` along `directions` passes through the detector point
            offset = detector_point - starts[view, channel, :2]
            direction = directions[view, channel]
            cross = offset[0] * direction[1] - offset[1] * direction[0]
            assert abs(cross) < 1e-9
    assert np.all(starts[..., 2] == 0) and np.all(directions[..., 2] == 0)


def test_curved_detector_rays_are_equiangular():
    g = fan(detector="curved")
    _, directions = g.rays()
    central = directions[:, g.n_channels // 2 - 1: g.n_channels // 2 + 1].mean(axis=1)
    central /= np.linalg.norm(central, axis=-1, keepdims=True)
    angles = np.arccos(np.clip((directions * central[:, None]).sum(-1), -1, 1))
    np.testing.assert_allclose(angles[0], np.abs(g.channel_positions_mm) / g.source_detector_mm,
                               atol=1e-9)
