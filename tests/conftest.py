"""Shared fixtures: small geometries, a Shepp–Logan slice in μ, an interrupted training run,
pipeline scripts as modules."""

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import odl
import pytest
import torch
from odl.core import phantom

from ctpnp import ScanGeometry, physics

# One torch thread per test process: predictable on a shared 2-core machine, where
# two OpenMP threads oversubscribe the cores and slow small kernels several-fold.
torch.set_num_threads(1)



@pytest.fixture(scope="session", autouse=True)
def _matrix_cache_in_a_temporary_folder(tmp_path_factory):
    """Projector matrices the tests build go to a folder of this session, never the user's
    cache (``~/.cache/ctpnp/matrices`` would keep gigabytes after a run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTPNP_MATRIX_CACHE", str(tmp_path_factory.mktemp("matrices")))
        yield


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch) -> Callable:
    """``cache(patients, shape=(2, 40, 40))`` caches each corpus patient as a volume whose
    slice k holds 100 k HU plus a ramp of -50..50 HU along x, in a ``CTPNP_DATA`` folder
    of this test."""
    from ctpnp.data.cache import write_patient

    folder = tmp_path / "corpus"
    monkeypatch.setenv("CTPNP_DATA", str(folder))

    def cache(patients, shape=(2, 40, 40)):
        ramp = np.linspace(-50, 50, shape[2], dtype=np.float32)
        hu = (100.0 * np.arange(shape[0], dtype=np.float32)[:, None, None] + ramp
              ) * np.ones(shape, dtype=np.float32)
        for patient in patients:
            write_patient(hu, {"patient": patient, "anatomy": "test", "licence": "none",
                               "pixel_mm": 0.5, "slice_mm": 5.0, "voxel_assumed": False,
                               "shape": list(shape), "sha256": "x"}, folder)

    return cache


GRID = (128, 128)
PIXEL_MM = 1.5


def geometries() -> dict[str, ScanGeometry]:
    """One small geometry per beam/detector kind (parallel, fan flat, fan curved)."""
    return {
        "parallel": ScanGeometry.parallel(GRID, PIXEL_MM, 180),
        "fan-flat": ScanGeometry.clinical_fan(GRID, PIXEL_MM, 240, detector="flat"),
        "fan-curved": ScanGeometry.clinical_fan(GRID, PIXEL_MM, 240, detector="curved"),
    }


@pytest.fixture(scope="session")
def shepp_logan_hu() -> torch.Tensor:
    """Modified Shepp–Logan on the test grid, ``(1, 1, 128, 128)`` HU.

    ODL's intensities are mapped so that the brain (0.2) is water (0 HU) and
    the skull (1.0) is bone-like (+1000 HU); the ventricles become CSF-like.
    """
    space = odl.uniform_discr([-1, -1], [1, 1], GRID)
    value = torch.from_numpy(phantom.shepp_logan(space, modified=True).data.astype("float32"))
    hu = torch.where(value > 0.5, 1000.0, 1000.0 * (value - 0.2) / 0.2 * 0.1)
    return torch.where(value == 0, -1000.0, hu)[None, None]


@pytest.fixture(scope="session")
def shepp_logan_mu(shepp_logan_hu) -> torch.Tensor:
    return physics.hu_to_mu(shepp_logan_hu)


class _Interrupted(Exception):
    """Raised from a progress callback to simulate a crash mid-training."""


@pytest.fixture
def run_until_checkpoint() -> Callable[[Callable, int], None]:
    """``run(train, step)`` calls ``train(progress=...)`` and interrupts it just after
    checkpoint ``step`` was written, as a crash would (and checks that it did)."""

    def run(train: Callable, step: int) -> None:
        def stop(event: dict) -> None:
            if event["event"] == "checkpoint" and event["step"] == step:
                raise _Interrupted

        with pytest.raises(_Interrupted):
            train(progress=stop)

    return run


def load_pipeline(relative_path: str):
    """The script ``pipelines/<relative_path>`` loaded as a module (its ``main`` not run)."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
