"""Whole volumes: same result whatever the batching or workers, resumable, no partial files."""

import json

import numpy as np
import pytest
import torch

from ctpnp import ScanGeometry, physics
from ctpnp.apps.volume import reconstruct_volume
from ctpnp.phantoms import load

GEOMETRY = ScanGeometry.clinical_fan((48, 48), 4.0, 72)
TV_PARAMS = {"max_iter": 15, "rtol": 0.0}


@pytest.fixture(scope="module")
def sinograms() -> np.ndarray:
    """Four noisy scans of the water phantom (different noise): ``(4, views, channels)``."""
    clean = torch.from_numpy(load("water_inserts").project(GEOMETRY))[None, None]
    noisy = [physics.simulate_low_dose(clean, 2e4, seed=seed)[0, 0] for seed in range(4)]
    return torch.stack(noisy).numpy()


def _tv(sinograms, out_dir, **kwargs):
    return reconstruct_volume(sinograms, GEOMETRY, out_dir, method="tv", params=TV_PARAMS,
                              device="cpu", **kwargs)


@pytest.fixture(scope="module")
def reference(sinograms, tmp_path_factory) -> np.ndarray:
    """One slice at a time, one process."""
    return np.array(_tv(sinograms, tmp_path_factory.mktemp("reference")).volume)


def test_batch_size_does_not_change_the_result(sinograms, reference, tmp_path):
    result = _tv(sinograms, tmp_path, batch_size=3)
    assert result.volume.shape == (4, 48, 48) and np.isfinite(reference).all()
    np.testing.assert_allclose(result.volume, reference, rtol=1e-5, atol=1e-7)
    assert (result.n_iter == 15).all() and not result.diverged.any()


def test_two_workers_give_the_same_result(sinograms, reference, tmp_path):
    done = []
    result = _tv(sinograms, tmp_path, workers=2,
                 progress=lambda n, total, _note: done.append((n, total)))
    np.testing.assert_allclose(result.volume, reference, rtol=1e-5, atol=1e-7)
    assert done[0] == (0, 4) and done[-1] == (4, 4) and result.computed.all()


@pytest.mark.parametrize("workers", [1, 2])
def test_every_solver_iteration_is_reported_in_the_calling_process(sinograms, tmp_path,
                                                                    workers):
    ticks = []
    result = _tv(sinograms[:3], tmp_path, workers=workers, batch_size=2,
                 on_iteration=lambda: ticks.append(1))
    assert (result.n_iter == 15).all()
    assert len(ticks) == 30  # two batches (2 + 1 slices) of 15 iterations each


def test_pnp_admm_with_tv_prior_runs_per_slice(sinograms, tmp_path):
    single = reconstruct_volume(sinograms[:2], GEOMETRY, tmp_path / "one", prior="tv",
                                params={"max_iter": 5}, device="cpu")
    batched = reconstruct_volume(sinograms[:2], GEOMETRY, tmp_path / "two", prior="tv",
                                 params={"max_iter": 5}, batch_size=2, device="cpu")
    # batch-shape rounding of float32 reductions only (see test_solvers): 2e-6 /mm = 0.1 HU
    np.testing.assert_allclose(batched.volume, single.volume, rtol=1e-5, atol=2e-6)
    info = json.loads((tmp_path / "one" / "slice_00001.json").read_text())
    assert set(info) == {"n_iter", "converged", "diverged"}


class Interrupt(Exception):
    pass


def _stop_after(count):
    def progress(done, total, _note):
        if done >= count:
            raise Interrupt
    return progress


def test_interrupted_run_resumes_without_recomputing(sinograms, reference, tmp_path):
    with pytest.raises(Interrupt):
        _tv(sinograms, tmp_path, progress=_stop_after(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "slice_00000.json", "slice_00000.npy", "slice_00001.json", "slice_00001.npy",
        "volume.json"]
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("slice_*")}

    result = _tv(sinograms, tmp_path)
    assert result.computed.tolist() == [False, False, True, True]
    assert all(tmp_path.joinpath(n).stat().st_mtime_ns == t for n, t in before.items())
    np.testing.assert_allclose(result.volume, reference, rtol=1e-5, atol=1e-7)


def test_interrupted_workers_leave_no_partial_files(sinograms, tmp_path):
    with pytest.raises(Interrupt):
        _tv(sinograms, tmp_path, workers=2, progress=_stop_after(1))
    names = [p.name for p in tmp_path.iterdir()]
    assert not [n for n in names if "partial" in n], names
    finished = {n[:-5] for n in names if n.endswith(".json") and n.startswith("slice_")}
    assert 1 <= len(finished) <= 4
    assert all(f"{stem}.npy" in names for stem in finished)


def test_a_lazy_sequence_streams_and_matches(sinograms, reference, tmp_path):
    class Lazy:
        def __init__(self):
            self.loaded: list[int] = []

        def __len__(self):
            return len(sinograms)

        def __getitem__(self, index):
            self.loaded.append(index)
            return sinograms[index]

    lazy = Lazy()
    result = _tv(lazy, tmp_path, batch_size=2)
    np.testing.assert_allclose(result.volume, reference, rtol=1e-5, atol=1e-7)
    assert sorted(set(lazy.loaded)) == [0, 1, 2, 3]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "sart"}, "method"),
    ({"batch_size": 0}, "batch_size"),
    ({"sinograms": np.zeros((2, 10, 10), np.float32)}, "geometry expects"),
])
def test_bad_input_is_refused_before_any_work(sinograms, tmp_path, kwargs, message):
    arguments = {"sinograms": sinograms, "method": "tv", **kwargs}
    with pytest.raises(ValueError, match=message):
        reconstruct_volume(arguments.pop("sinograms"), GEOMETRY, tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


def test_a_folder_from_other_settings_is_not_resumed(sinograms, tmp_path):
    _tv(sinograms[:1], tmp_path)
    with pytest.raises(ValueError, match="another reconstruction"):
        reconstruct_volume(sinograms[:1], GEOMETRY, tmp_path, method="fbp", device="cpu")


def test_workers_use_the_matrix_the_calling_process_built(tmp_path, monkeypatch):
    """Before workers start, the calling process builds the system matrix into the disk
    cache, which the workers then map; two workers give what one process gives."""
    from ctpnp.apps.volume import _Config, _prepare_projector

    geometry = ScanGeometry.clinical_fan((48, 48), 4.0, 60)  # in no other test of this session
    cache = tmp_path / "matrices"
    monkeypatch.setenv("CTPNP_MATRIX_CACHE", str(cache))
    assert not cache.exists()
    assert _prepare_projector(_Config(geometry, "tv", "prox", TV_PARAMS, "cpu")) == "matrix"
    assert len(list(cache.iterdir())) == 1
    clean = torch.from_numpy(load("water_inserts").project(geometry))[None, None]
    stack = torch.cat([physics.simulate_low_dose(clean, 2e4, seed=s) for s in range(2)])
    stack = stack[:, 0].numpy()
    two = reconstruct_volume(stack, geometry, tmp_path / "two", method="tv", params=TV_PARAMS,
                             device="cpu", workers=2)
    assert len(list(cache.iterdir())) == 1  # the workers found it, built no other
    one = reconstruct_volume(stack, geometry, tmp_path / "one", method="tv", params=TV_PARAMS,
                             device="cpu")
    np.testing.assert_allclose(two.volume, one.volume, rtol=1e-5, atol=1e-7)
