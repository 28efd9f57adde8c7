"""Run the study: every scene × dose × method, resumable, then the report and figures.

A case is one method on one noisy scan: Poisson noise at ``photons`` per
reading on the scene's exact noiseless data (the same noise realisation for
every method), reconstructed, measured against the reference, its log-prior
map computed with the configured prior, and its calibrated implausibility
(:mod:`ctpnp.quality.indicator`) with the configured prior's shipped
calibration, with how well that finds the case's own errors. Each scene's
reference also gets a log-prior map (``<scene>__reference``), the prior's
verdict on the ground truth itself; it has no data, so no implausibility.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ctpnp import physics
from ctpnp.apps.progress import Progress
from ctpnp.apps.study.config import MethodSpec, SceneSpec, StudyConfig, load_config
from ctpnp.apps.study.measure import error_correlation, implausibility, roi_measurements
from ctpnp.apps.study.report import write_report
from ctpnp.apps.study.scenes import Scene, build_scene
from ctpnp.apps.study.store import load_arrays, load_record, save_case
from ctpnp.figures.study import write_figures
from ctpnp.priors import LPNPrior
from ctpnp.priors import load as load_prior
from ctpnp.priors.registry import fingerprint
from ctpnp.projector import Tomography
from ctpnp.quality import Calibration, calibration_path, load_calibration, psnr_hu, quality_row
from ctpnp.registry import PNP_METHODS, solver
from ctpnp.solvers import SolverResult

__all__ = ["Case", "calibration_key", "plan", "run_study"]


@dataclass(frozen=True)
class Case:
    """One unit of work: a scene's reference (``method is None``) or one reconstruction."""

    scene: SceneSpec
    photons: float | None
    method: MethodSpec | None

    @property
    def id(self) -> str:
        scene = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.scene.name)
        if self.method is None:
            return f"{scene}__reference"
        return f"{scene}__{self.photons:.0f}__{self.method.slug}"

    @property
    def description(self) -> str:
        if self.method is None:
            return f"{self.scene.name}: reference log-prior map"
        return f"{self.scene.name}, {self.photons:g} photons, {self.method.name}"

    def key(self, config: StudyConfig) -> dict:
        """Everything the case's result depends on; a stored case with another key is redone.

        A reconstruction's key holds its implausibility calibration (:func:`calibration_key`).
        """
        return {
            "scene": dataclasses.asdict(self.scene), "photons": self.photons,
            "method": None if self.method is None else dataclasses.asdict(self.method),
            "grid": [config.size, config.pixel_mm, config.views],
            "noise_seed": config.noise_seed, "roi_erosion_px": config.roi_erosion_px,
            "log_prior": [config.log_prior, config.log_prior_max_iter],
            "priors": {name: fingerprint(name) for name in self._priors(config)},
            "implausibility": (None if self.method is None
                               else calibration_key(config.implausibility)),
        }

    def _priors(self, config: StudyConfig) -> list[str]:
        """The priors the case uses: the method's (if any), the log-prior map's and, for a
        reconstruction, the implausibility's."""
        if self.method is None:
            return [config.log_prior]
        method_prior = [] if self.method.prior is None else [self.method.prior]
        return sorted({*method_prior, config.log_prior, config.implausibility})


def calibration_key(prior: str) -> dict:
    """What the implausibility of a case depends on besides the code: the prior, the
    fingerprint its shipped calibration was made for and the sha256 of that file (a
    re-calibration of the same weights changes it)."""
    path = calibration_path(prior)
    return {"prior": prior, "fingerprint": load_calibration(prior, fingerprint(prior)).fingerprint,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def plan(config: StudyConfig) -> list[Case]:
    """Every case, scene by scene: its reference, then dose by dose every method."""
    return [case for scene in config.scenes for case in _scene_cases(scene, config)]


def run_study(out_dir: Path, config: Path | None = None, progress: Progress | None = None
              ) -> Path:
    """Run (or resume) the study of ``config`` (default: the shipped ``default.yaml``).

    Finished cases are kept in ``out_dir/cases/`` and skipped on a re-run.
    Writes ``study.md``, ``results.csv``, ``inserts.csv`` and the figures
    (``*.png``) to ``out_dir``. ``progress(cases_done, cases_total, description)``
    follows each case, computed or found stored.

    Returns:
        The path of ``study.md``.

    Raises:
        StudyConfigError: a malformed configuration (naming the file and field).
    """
    settings = load_config(config)
    calibration = load_calibration(settings.implausibility, fingerprint(settings.implausibility))
    out_dir = Path(out_dir)
    cases_dir = out_dir / "cases"
    cases = plan(settings)
    records = []
    runner = _Runner(settings, calibration)
    for done, case in enumerate(cases, start=1):
        key = case.key(settings)
        record = load_record(cases_dir, case.id, key)
        if record is None:
            record = runner.run(case, key, cases_dir)
            note = ""
        else:
            note = " (stored)"
        records.append(record)
        if progress is not None:
            progress(done, len(cases), case.description + note)
    references = [r for r in records if r["method"] is None]
    results = [r for r in records if r["method"] is not None]
    write_figures(out_dir, partial(load_arrays, cases_dir), settings, references, results)
    return write_report(out_dir, settings, calibration, references, results)


def _scene_cases(scene: SceneSpec, config: StudyConfig) -> Iterator[Case]:
    yield Case(scene, None, None)
    for photons in config.photons:
        for method in config.methods:
            yield Case(scene, photons, method)


class _Runner:
    """Computes cases, building each scene, noisy scan and prior once."""

    def __init__(self, config: StudyConfig, calibration: Calibration) -> None:
        self.config = config
        self.calibration = calibration
        self.scene: Scene | None = None
        self.op: Tomography | None = None
        self.scans: dict[float, torch.Tensor] = {}
        self.priors: dict[str, object] = {}

    def run(self, case: Case, key: dict, cases_dir: Path) -> dict:
        scene = self._scene(case.scene)
        reference_hu = scene.reference_hu
        start = time.perf_counter()
        z_map = np.full(reference_hu.shape[-2:], np.nan, dtype=np.float32)
        if case.method is None:
            hu, record = reference_hu, {}
            reconstruction_s = time.perf_counter() - start
        else:
            y = self._scan(case)
            x, record = self._reconstruct(case, scene, y)
            hu = physics.mu_to_hu(x)
            reconstruction_s = time.perf_counter() - start
            start = time.perf_counter()
            z_map, scores = implausibility(x, y, self.op, self._prior(self.config.implausibility),
                                           self._prior(self.calibration.judge),
                                           self.calibration, reference_hu)
            record |= scores | {"implausibility_seconds": time.perf_counter() - start}
        start = time.perf_counter()
        log_prior_map = self._log_prior_map(hu)
        record |= {
            "id": case.id, "key": key, "scene": case.scene.name, "family": case.scene.family,
            "photons": case.photons, "method": None if case.method is None else case.method.name,
            "pixel_mm": scene.geometry.pixel_mm, "seconds": reconstruction_s,
            "map_seconds": time.perf_counter() - start,
            **error_correlation(log_prior_map, hu[0, 0].numpy(), reference_hu[0, 0].numpy()),
        }
        save_case(cases_dir, record, hu[0, 0].numpy(), log_prior_map, z_map)
        return record

    def _reconstruct(self, case: Case, scene: Scene, y: torch.Tensor
                     ) -> tuple[torch.Tensor, dict]:
        """The ``(1, 1, H, W)`` reconstruction (μ, 1/mm) of scan ``y`` and its record."""
        method = case.method
        trace: list[float] = []

        def callback(_iteration: int, _record: dict, estimate: torch.Tensor) -> None:
            trace.append(float(psnr_hu(physics.mu_to_hu(estimate), scene.reference_hu)))

        result = None
        stopping = {"max_iter": method.max_iter} | (
            {} if method.rtol is None else {"rtol": method.rtol})
        if method.solver in PNP_METHODS:
            result = solver(method.solver)(y, self.op, self._prior(method.prior),
                                           equivariant=method.equivariant, callback=callback,
                                           **stopping)
        elif method.iterative:
            result = solver(method.solver)(y, self.op, callback=callback, **stopping)
        x = self.op.fbp(y, filter="hann") if result is None else result.x
        hu = physics.mu_to_hu(x)
        return x, {
            "solver": method.solver, "prior": method.prior, "equivariant": method.equivariant,
            **quality_row(hu, scene.reference_hu), **_convergence(result),
            "noise_std_hu": float("nan"), **roi_measurements(hu[0, 0].numpy(), scene),
            "psnr_trace_db": trace,
        }

    def _scene(self, spec: SceneSpec) -> Scene:
        if self.scene is None or self.scene.spec != spec:
            self.scene = build_scene(spec, self.config)
            self.op = Tomography(self.scene.geometry)
            self.scans = {}
        return self.scene

    def _scan(self, case: Case) -> torch.Tensor:
        """The noisy scan of ``case``: one noise realisation per scene and dose."""
        if case.photons not in self.scans:
            seed = self.config.noise_seed + zlib.crc32(f"{case.scene.name}/{case.photons:g}"
                                                       .encode()) % 2**31
            self.scans[case.photons] = physics.simulate_low_dose(self.scene.clean,
                                                                 case.photons, seed=seed)
        return self.scans[case.photons]

    def _prior(self, name: str):
        if name not in self.priors:
            self.priors[name] = load_prior(name)
        return self.priors[name]

    def _log_prior_map(self, hu: torch.Tensor):
        """``(H, W)`` float32 log-prior map (nats/pixel) of an ``(1, 1, H, W)`` HU image."""
        if not bool(torch.isfinite(hu).all()):
            return torch.full(hu.shape[-2:], float("nan")).numpy()
        prior = self._prior(self.config.log_prior)
        mu = physics.hu_to_mu(hu)
        if isinstance(prior, LPNPrior):
            value = prior.log_prior_map(mu, max_iter=self.config.log_prior_max_iter)
        else:
            value = prior.log_prior_map(mu)
        return value.detach()[0, 0].numpy()


def _convergence(result: SolverResult | None) -> dict:
    """Iterations and stopping state (FBP: 0 iterations, ``converged`` is ``None``)."""
    if result is None:
        return {"n_iter": 0, "converged": None, "diverged": False}
    return {"n_iter": int(result.n_iter[0]), "converged": bool(result.converged[0]),
            "diverged": bool(result.diverged[0])}
