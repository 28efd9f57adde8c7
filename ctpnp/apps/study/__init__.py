"""The phantom validation study (issue 7, item 4): phantoms × doses × methods.

``run_study(out_dir, config=None, progress=None)`` scans every configured
scene (held-out random anatomy, analytic phantoms, a real CT slice) at every
dose from exact line integrals plus Poisson noise, reconstructs it with FBP,
TV and the PnP methods, measures quality, insert CT numbers, noise, the
log-prior map's agreement with the error and the calibrated implausibility
(:mod:`ctpnp.quality.indicator`: score, flag, detection of the case's own
errors), and writes ``study.md``,
``results.csv``, ``inserts.csv`` and figures. It resumes: finished cases are
kept in ``out_dir/cases/``.

Modules: :mod:`~ctpnp.apps.study.config` (YAML → dataclasses),
:mod:`~ctpnp.apps.study.scenes` (references, noiseless data, ROIs),
:mod:`~ctpnp.apps.study.measure` (metrics of one image), :mod:`~ctpnp.apps.study.store`
(case files), :mod:`~ctpnp.apps.study.run` (the loop), :mod:`~ctpnp.apps.study.report`
(tables) and :mod:`~ctpnp.figures.study` (figures).
"""

from ctpnp.apps.study.config import DEFAULT_CONFIG, StudyConfig, StudyConfigError, load_config
from ctpnp.apps.study.run import run_study

__all__ = ["DEFAULT_CONFIG", "StudyConfig", "StudyConfigError", "load_config", "run_study"]
