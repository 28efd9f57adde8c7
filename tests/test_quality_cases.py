"""The quality indicator's validation cases: failures inserted where they belong, and the rule
that chooses a judge among candidates."""

import math

import numpy as np
import pytest
import torch
from conftest import load_pipeline

from ctpnp import physics
from ctpnp.evaluation import PIXEL_MM
from ctpnp.quality import validation


def _reference_hu(size: int = 128) -> torch.Tensor:
    """Air outside a body of radius 60 px: bone (1000 HU) around soft tissue (40 HU) inside
    radius 40 px."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    radius = ((rows - size / 2) ** 2 + (cols - size / 2) ** 2).sqrt()
    hu = torch.full((size, size), -1000.0)
    hu[radius < 60] = 1000.0
    hu[radius < 40] = 40.0
    return hu[None, None]


@pytest.mark.parametrize(("kind", "radius_mm"), [("metal", validation.METAL_RADIUS_MM),
                                                 ("bubble", validation.BUBBLE_RADIUS_MM),
                                                 ("lesion", validation.LESION_RADIUS_MM)])
def test_failures_are_disks_of_their_kind_in_soft_tissue(kind, radius_mm):
    reference = _reference_hu()
    altered = validation._insert(kind, reference, seed=3)
    changed = altered != reference
    area_px = math.pi * (radius_mm / PIXEL_MM) ** 2
    assert float(changed.sum()) == pytest.approx(area_px, rel=0.15)
    assert bool((reference[changed] == 40.0).all())  # soft tissue only
    values = altered[changed]
    if kind == "metal":
        expected = float(physics.mu_to_hu(torch.tensor(validation.METAL_MU_PER_MM)))
        assert torch.allclose(values, torch.tensor(expected))
    elif kind == "bubble":
        assert bool((values == -1000.0).all())
    else:  # a checkerboard of +-200 HU around 60 HU
        assert set(np.unique(values.numpy())) == {-140.0, 260.0}
        assert float(values.mean()) == pytest.approx(60.0, abs=40.0)
    assert torch.equal(reference, _reference_hu())  # the reference is not modified


def test_each_geometry_gets_one_operator():
    sparse = validation.operator(32, validation.SPARSE_VIEWS)
    assert validation.operator(32, validation.SPARSE_VIEWS) is sparse
    assert sparse.geometry == validation.geometry(32, validation.SPARSE_VIEWS)
    assert validation.operator(32).geometry.n_views == 360


def test_a_failure_needs_room_in_soft_tissue():
    with pytest.raises(ValueError, match="soft-tissue spot"):
        validation._insert("lesion", torch.full((1, 1, 32, 32), 1000.0), seed=0)


def test_a_new_judge_must_win_by_the_margin_and_lose_little_on_any_kind():
    choose = load_pipeline("calibrate/choose_judge.py").choose
    kinds = {"metal": 0.9, "bubble": 0.7}
    better = {"metal": 0.9, "bubble": 0.8}
    assert choose({"own": 0.80, "other": 0.85}, {"own": kinds, "other": better}, "own") == "other"
    slightly = {"metal": 0.9, "bubble": 0.72}
    assert choose({"own": 0.80, "other": 0.81}, {"own": kinds, "other": slightly}, "own") == "own"
    lopsided = {"metal": 0.8, "bubble": 0.95}
    assert choose({"own": 0.80, "other": 0.875}, {"own": kinds, "other": lopsided},
                  "own") == "own"
    assert choose({"own": 0.80, "other": 0.75}, {"own": kinds, "other": kinds}, "own") == "own"
    assert choose({"a": 0.7, "b": 0.75}, {"a": kinds, "b": kinds}, "none of them") == "b"
    undefined = {"metal": math.nan, "bubble": 0.7}  # no failed region of that kind
    assert choose({"own": 0.70, "other": 0.80}, {"own": undefined, "other": {
        "metal": math.nan, "bubble": 0.8}}, "own") == "other"
