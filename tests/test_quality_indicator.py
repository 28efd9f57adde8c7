"""The calibrated indicator: z-scores ~N(0, 1) on what it was fitted on, dose interpolation,
flags and regions, calibration files checked against the prior's fingerprint."""

import json
import math

import numpy as np
import pytest
import torch

from ctpnp import physics
from ctpnp.priors.registry import fingerprint
from ctpnp.quality import (
    Calibration,
    QualityMaps,
    calibration_path,
    expand_regions,
    fit_calibration,
    load_calibration,
    region_features,
    region_scores,
    slice_verdicts,
)

SIZE = 64  # 4 x 4 regions of 16 px


def _maps(rng, variance, batch=1):
    """Maps constant inside each region, whose region means are log-normal (residual:
    log-mean 3 + 0.5 log10 v, log-std 0.4; asymmetry: log-mean 1 + 0.5 log10 v, log-std 0.6,
    correlated 0.5 with the residual; prior: log-mean -3 + 0.3 log10 v, log-std 0.5; data:
    log-mean 0, log-std 0.1)."""
    regions = (batch, 1, SIZE // 16, SIZE // 16)
    shared, own = rng.standard_normal(regions), rng.standard_normal(regions)
    residual = np.exp(3.0 + 0.5 * math.log10(variance) + 0.4 * shared)
    asymmetry = np.exp(1.0 + 0.5 * math.log10(variance)
                       + 0.6 * (0.5 * shared + math.sqrt(0.75) * own))
    prior = np.exp(-3.0 + 0.3 * math.log10(variance) + 0.5 * rng.standard_normal(regions))
    data = np.exp(0.1 * rng.standard_normal(regions))
    residual, asymmetry, prior, data = (
        expand_regions(torch.from_numpy(a), (SIZE, SIZE)).float()
        for a in (residual, asymmetry, prior, data))
    return QualityMaps(residual, asymmetry, prior, data,
                       torch.full((batch,), variance, dtype=torch.float64))


def _body():
    return torch.full((1, 1, SIZE, SIZE), physics.MU_WATER_PER_MM)


def _calibration(rng, variances=(1e-3, 1e-4), n=200):
    clean = [(f"{v:g}", v, region_features(_maps(rng, v), _body())) for v in variances
             for _ in range(n)]
    return fit_calibration("prox", "abc", clean, {"slices": "synthetic"})


def test_clean_regions_score_about_standard_normal_at_every_dose():
    rng = np.random.default_rng(0)
    calibration = _calibration(rng)
    assert [d.log10_noise_variance for d in calibration.doses] == pytest.approx([-4, -3])
    for variance in (1e-3, 1e-4):
        maps = _maps(rng, variance, batch=400)
        z = region_scores(maps, _body().expand(400, -1, -1, -1), calibration)
        values = z.implausibility.flatten().numpy()
        assert abs(np.median(values)) < 0.1 and 0.9 < values.std() < 1.1
        for single in (z.residual, z.asymmetry, z.prior, z.data):
            assert abs(np.median(single.flatten().numpy())) < 0.1
    # about 2 % of clean slices above the threshold, by construction
    verdicts = slice_verdicts(region_scores(_maps(rng, 1e-3, batch=500),
                                            _body().expand(500, -1, -1, -1), calibration),
                              calibration)
    assert 0.0 < np.mean([v.flagged for v in verdicts]) < 0.06


def test_each_dose_flags_its_share_of_clean_slices_when_its_tails_differ():
    """At 1e-3 a region's residual is heavy-tailed (Student t, 3 degrees of freedom), at 1e-4
    Gaussian: one threshold for both would flag the low dose far more often."""

    def maps(rng, variance, batch=1):
        out = _maps(rng, variance, batch)
        if variance == 1e-3:
            tail = rng.standard_t(3, size=(batch, 1, SIZE // 16, SIZE // 16))
            out.residual_hu.mul_(expand_regions(torch.from_numpy(np.exp(0.4 * tail)),
                                                (SIZE, SIZE)).float())
        return out

    rng = np.random.default_rng(8)
    clean = [(f"{v:g}", v, region_features(maps(rng, v), _body())) for v in (1e-3, 1e-4)
             for _ in range(300)]
    calibration = fit_calibration("prox", "abc", clean, {"slices": "synthetic"})
    low, high = calibration.doses
    assert high.threshold_z > low.threshold_z + 0.5
    for variance in (1e-3, 1e-4):
        verdicts = slice_verdicts(region_scores(maps(rng, variance, batch=800),
                                                _body().expand(800, -1, -1, -1), calibration),
                                  calibration)
        assert 0.005 < np.mean([v.flagged for v in verdicts]) < 0.04


def test_statistics_interpolate_in_log_variance_and_hold_beyond():
    calibration = _calibration(np.random.default_rng(1))
    low, high = calibration.doses
    middle = calibration.at(10**-3.5)
    assert middle.prior_center == pytest.approx((low.prior_center + high.prior_center) / 2)
    assert middle.residual_center == pytest.approx(3.0 - 0.5 * 3.5, abs=0.1)
    assert calibration.at(1e-6) == low and calibration.at(1.0) == high


def test_an_implausible_region_is_flagged_where_it_is():
    rng = np.random.default_rng(2)
    calibration = _calibration(rng)
    maps = _maps(rng, 1e-3)
    maps.residual_hu[..., 32:48, 16:32] *= math.exp(3.0)  # region (2, 1): 7.5 MADs above
    (verdict,) = slice_verdicts(region_scores(maps, _body(), calibration), calibration)
    assert verdict.flagged and verdict.score > calibration.at(1e-3).threshold_z
    assert verdict.regions[0][:2] == (32, 16)
    assert verdict.to_dict()["flagged_regions"][0]["z"] == pytest.approx(verdict.score)


def test_asymmetry_raises_its_region_and_data_are_reported_beside():
    rng = np.random.default_rng(7)
    calibration = _calibration(rng)
    maps = _maps(rng, 1e-3)
    before = region_scores(maps, _body(), calibration)
    maps.asymmetry_hu[..., :16, :16] *= math.exp(1.0)
    maps.data_consistency[..., 16:, :] *= 3.0
    after = region_scores(maps, _body(), calibration)
    stats = calibration.at(1e-3)
    rise = (after.implausibility - before.implausibility)[0, 0]
    assert float(rise[0, 0]) == pytest.approx(
        1.0 / stats.asymmetry_scale / stats.combined_scale, rel=1e-4)
    assert torch.allclose(rise.flatten()[1:], torch.zeros(15, dtype=rise.dtype), atol=1e-9)
    data_rise = (after.data - before.data)[0, 0, 1:]
    assert torch.allclose(data_rise, torch.full_like(data_rise, math.log(3) / stats.data_scale))


def test_regions_outside_the_body_are_not_scored():
    calibration = _calibration(np.random.default_rng(3))
    x = _body()
    x[..., :16, :] = 0.0  # air
    z = region_scores(_maps(np.random.default_rng(4), 1e-3), x, calibration).implausibility
    assert torch.isnan(z[0, 0, 0]).all() and torch.isfinite(z[0, 0, 1:]).all()


def test_calibration_files_round_trip_and_are_checked(tmp_path):
    calibration = _calibration(np.random.default_rng(5))
    path = tmp_path / "prox.json"
    path.write_text(json.dumps(calibration.to_dict()))
    assert load_calibration("prox", "abc", path) == calibration
    with pytest.raises(ValueError, match=r"prox\.json.*fingerprint.*other weights"):
        load_calibration("prox", "def", path)
    with pytest.raises(ValueError, match="no quality calibration"):
        load_calibration("prox", "abc", tmp_path / "missing.json")
    path.write_text(json.dumps({**calibration.to_dict(), "format": "other/1"}))
    with pytest.raises(ValueError, match=r"prox\.json: not a quality calibration"):
        load_calibration("prox", "abc", path)


def test_a_calibration_judged_by_another_prior_is_checked_against_the_judge(tmp_path):
    from dataclasses import replace

    from ctpnp.priors import load
    from ctpnp.quality import load_judge

    calibration = _calibration(np.random.default_rng(5))
    assert (calibration.judge, calibration.judge_fingerprint) == ("prox", "abc")
    gmm = load("gmm")
    assert load_judge(replace(calibration, prior="gmm", judge="gmm"), gmm) is gmm
    judged = replace(calibration, prior="gmm", judge="prox", judge_fingerprint=fingerprint("prox"))
    path = tmp_path / "gmm.json"
    path.write_text(json.dumps(judged.to_dict()))
    assert load_calibration("gmm", "abc", path) == judged
    assert type(load_judge(judged, gmm)).__name__ == type(load("prox")).__name__
    path.write_text(json.dumps(replace(judged, judge_fingerprint="stale").to_dict()))
    with pytest.raises(ValueError, match=r"gmm\.json.*judge_fingerprint.*'prox'"):
        load_calibration("gmm", "abc", path)


def test_maps_without_a_prior_map_need_a_calibration_without_one():
    rng = np.random.default_rng(6)
    calibration = _calibration(rng)
    maps = _maps(rng, 1e-3)
    with pytest.raises(ValueError, match="prior map"):
        region_scores(QualityMaps(maps.residual_hu, maps.asymmetry_hu, None,
                                  maps.data_consistency, maps.noise_variance),
                      _body(), calibration)


def test_the_shipped_calibration_is_for_the_shipped_prior():
    """Fails when the prior's weights or card change: re-run pipelines/calibrate/quality.py."""
    calibration = load_calibration("prox", fingerprint("prox"))
    assert isinstance(calibration, Calibration) and calibration_path("prox").is_file()
    assert len(calibration.doses) == 2
    assert all(math.isfinite(d.threshold_z) for d in calibration.doses)


def test_gumbel_quantile_recovers_the_quantile_of_gumbel_maxima():
    from ctpnp.quality.indicator import gumbel_quantile

    maxima = np.random.default_rng(9).gumbel(2.0, 0.3, size=20000)
    exact = 2.0 - 0.3 * math.log(-math.log(0.98))
    assert gumbel_quantile(maxima, 0.98) == pytest.approx(exact, abs=0.02)
    assert gumbel_quantile(maxima, 0.5) == pytest.approx(float(np.median(maxima)), abs=0.02)
    with pytest.raises(ValueError, match="at least 3"):
        gumbel_quantile(np.array([1.0, np.nan, 2.0]), 0.98)
