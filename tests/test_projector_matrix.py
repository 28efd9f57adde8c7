"""The system-matrix backend against ODL + ASTRA (the reference), on the real ASTRA."""

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from ctpnp import ScanGeometry, Tomography
from ctpnp.projector import matrix_cache
from ctpnp.projector.matrix import (
    MatrixTooLarge,
    build_system_matrix,
    estimate_matrix_mib,
    system_matrix,
)

GRID, PIXEL_MM, VIEWS = (64, 64), 3.0, 90
GEOMETRIES = {
    "parallel": ScanGeometry.parallel(GRID, PIXEL_MM, VIEWS),
    "fan-flat": ScanGeometry.clinical_fan(GRID, PIXEL_MM, VIEWS, detector="flat"),
    "fan-curved": ScanGeometry.clinical_fan(GRID, PIXEL_MM, VIEWS, detector="curved"),
}
MATRIX = {name: Tomography(g, "cpu", backend="matrix") for name, g in GEOMETRIES.items()}
ODL = {name: Tomography(g, "cpu", backend="odl") for name, g in GEOMETRIES.items()}


@pytest.fixture(autouse=True, scope="module")
def _matrix_cache_in_a_temporary_folder(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTPNP_MATRIX_CACHE", str(tmp_path_factory.mktemp("matrices")))
        yield


def _relative_error(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a - reference).abs().max() / reference.abs().max())


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


def _random(op: Tomography, seed: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((batch, 1, *op.image_shape), generator=generator),
            torch.rand((batch, 1, *op.sinogram_shape), generator=generator))


def test_default_cpu_backend_is_the_matrix_and_odl_stays_selectable():
    geometry = GEOMETRIES["fan-curved"]
    assert Tomography(geometry, "cpu").backend == "matrix"
    assert ODL["fan-curved"].backend == "odl"
    with pytest.raises(ValueError, match="backend='sparse' is unknown"):
        Tomography(geometry, "cpu", backend="sparse")


@pytest.mark.parametrize("name", GEOMETRIES)
def test_matrix_equals_odl_to_float_rounding(name):
    x, y = _random(MATRIX[name], seed=1)
    assert _relative_error(MATRIX[name].forward(x), ODL[name].forward(x)) < 1e-5
    assert _relative_error(MATRIX[name].adjoint(y), ODL[name].adjoint(y)) < 1e-5


@pytest.mark.parametrize("name", GEOMETRIES)
def test_adjoint_is_the_transpose(name):
    op = MATRIX[name]
    x, y = _random(op, seed=2)
    lhs, rhs = _dot(op.forward(x), y), _dot(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 1e-6 * abs(lhs)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_a_batch_equals_its_slices_one_by_one(name):
    op = MATRIX[name]
    x, y = _random(op, seed=3)
    singles_forward = torch.cat([op.forward(x[i:i + 1]) for i in range(3)])
    singles_adjoint = torch.cat([op.adjoint(y[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(op.forward(x), singles_forward, rtol=1e-6, atol=0)
    torch.testing.assert_close(op.adjoint(y), singles_adjoint, rtol=1e-6, atol=1e-6)


def test_threads_split_the_matrix_without_changing_the_result():
    op = MATRIX["fan-curved"]
    x, y = _random(op, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op.forward(x), op.adjoint(y)
        torch.set_num_threads(3)
        three = op.forward(x), op.adjoint(y)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(three[0], one[0], rtol=0, atol=0)
    torch.testing.assert_close(three[1], one[1], rtol=1e-6, atol=1e-6)


def test_autograd_gradient_equals_odl_gradient():
    x, y = _random(MATRIX["fan-curved"], seed=5, batch=2)
    gradients = []
    for op in (MATRIX["fan-curved"], ODL["fan-curved"]):
        image = (0.02 * x).requires_grad_(True)
        sinogram = op.forward(image)
        loss = 0.5 * (sinogram - y).pow(2).sum() + op.adjoint(sinogram).pow(2).mean()
        loss.backward()
        gradients.append(image.grad)
    assert _relative_error(gradients[0], gradients[1]) < 1e-5


def test_operators_of_one_geometry_share_one_matrix():
    geometry = GEOMETRIES["fan-flat"]
    first, second = Tomography(geometry, "cpu"), Tomography(geometry, "cpu")
    assert first._backend.matrix is second._backend.matrix


@pytest.mark.parametrize("name", GEOMETRIES)
def test_size_estimate_is_within_five_percent(name):
    backend = MATRIX[name]._backend
    estimate = estimate_matrix_mib(backend.reference)
    assert estimate == pytest.approx(backend.matrix.mib, rel=0.05)


def test_over_the_budget_auto_falls_back_to_odl_and_matrix_refuses():
    geometry = ScanGeometry.clinical_fan((48, 48), 4.0, 60)  # no other test builds it
    odl = Tomography(geometry, "cpu", backend="odl")
    budget_mib = 0.5 * estimate_matrix_mib(odl._backend)
    auto = Tomography(geometry, "cpu", max_matrix_mib=budget_mib)
    x, y = _random(auto, seed=6, batch=1)
    assert torch.equal(auto.forward(x), odl.forward(x))
    assert torch.equal(auto.adjoint(y), odl.adjoint(y))
    assert auto.backend == "odl"
    refusing = Tomography(geometry, "cpu", backend="matrix", max_matrix_mib=budget_mib)
    with pytest.raises(MatrixTooLarge, match="over the budget"):
        refusing.forward(x)
    assert Tomography(geometry, "cpu", max_matrix_mib=4 * budget_mib).backend == "matrix"


def _memory_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


def _products(matrix, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = matrix.multiply(torch.from_numpy(columns)).numpy()
    return rows, matrix.multiply_transpose(rows)


def test_disk_cache_serves_the_same_matrix_and_replaces_a_damaged_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("CTPNP_MATRIX_CACHE", str(tmp_path))
    reference = Tomography(ScanGeometry.clinical_fan((40, 40), 5.0, 30), "cpu",
                           backend="odl")._backend  # a geometry no other test holds
    columns = np.random.default_rng(7).random((40 * 40, 2), dtype=np.float32)
    expected = _products(build_system_matrix(reference), columns)
    assert not any(tmp_path.iterdir())

    built = system_matrix(reference)
    (entry,) = tmp_path.iterdir()
    assert not _memory_mapped(built.data)
    del built
    gc.collect()  # the process cache holds matrices only while operators use them
    loaded = system_matrix(reference)
    assert _memory_mapped(loaded.data)
    assert all(np.shares_memory(block.data, loaded.data) for block in loaded.blocks)
    for got, want in zip(_products(loaded, columns), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    del loaded
    gc.collect()

    indices = np.load(entry / "indices.npy")
    indices[-1] = 40 * 40  # a column outside the image
    np.save(entry / "indices.npy", indices)
    rebuilt = system_matrix(reference)
    assert not _memory_mapped(rebuilt.data)
    for got, want in zip(_products(rebuilt, columns), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.load(entry / "indices.npy").max() < 40 * 40


def test_disk_cache_drops_the_least_recently_used_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("CTPNP_MATRIX_CACHE", str(tmp_path))
    matrix = build_system_matrix(ODL["parallel"]._backend)
    first = matrix_cache.store("first", matrix)
    entry_mib = sum(f.stat().st_size for f in first.iterdir()) / 2**20
    monkeypatch.setenv("CTPNP_MATRIX_CACHE_MIB", str(2.5 * entry_mib))
    matrix_cache.store("second", matrix)
    assert matrix_cache.load("first", matrix.shape) is not None  # now the most recently used
    matrix_cache.store("third", matrix)
    assert {p.name for p in tmp_path.iterdir()} == {"first", "third"}
    assert first.exists()


def test_two_processes_storing_one_matrix_at_once_both_get_the_entry(tmp_path, monkeypatch):
    """The second writer finishes after the first has renamed its folder into place."""
    monkeypatch.setenv("CTPNP_MATRIX_CACHE", str(tmp_path))
    matrix = build_system_matrix(ODL["parallel"]._backend)
    original_save = np.save
    other_writer_ran = []

    def save_after_the_other_writer(path, array, *args, **kwargs):
        if Path(path).name == "data.npy" and not other_writer_ran:
            other_writer_ran.append(True)
            matrix_cache.store("key", matrix)  # the other process, all at once
        return original_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save_after_the_other_writer)
    assert matrix_cache.store("key", matrix) == tmp_path / "key"
    assert other_writer_ran
    monkeypatch.setattr(np, "save", original_save)
    data, *_ = matrix_cache.load("key", matrix.shape)
    np.testing.assert_array_equal(data, matrix.data)
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no staging folder left


def test_disk_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CTPNP_MATRIX_CACHE", "off")
    assert matrix_cache.store("anything", build_system_matrix(ODL["parallel"]._backend)) is None


def test_a_low_size_estimate_only_costs_a_copy():
    reference = ODL["fan-curved"]._backend
    columns = np.random.default_rng(8).random((64 * 64, 3), dtype=np.float32)
    grown = build_system_matrix(reference, nnz_estimate=10)
    for got, want in zip(_products(grown, columns),
                         _products(build_system_matrix(reference), columns), strict=True):
        np.testing.assert_array_equal(got, want)
