"""PnP parameters that follow the dose: denoiser strength and data weight from the noise level.

A PnP solver needs the denoiser strength ``sigma`` and the weight of the data
misfit. Both should follow the noise of the scan, which every solver estimates
from the sinogram (:func:`ctpnp.physics.estimate_noise_variance`, ``v``). The
rule is log-linear in ``v``::

    sigma_hu    = exp(log_sigma_hu + sigma_exponent * log(v / v_ref))
    data_weight = exp(log_data_scale + data_scale_exponent * log(v / v_ref)) / v

so four numbers, stored as logarithms and exponents, fix the defaults at
every dose. They are learned per prior and solver by restarted JFB
(:mod:`ctpnp.train.pnp_parameters`, ``ctpnp tune``) or fitted through the best
points of validation grids (:func:`fit_dose_rule`, ``pipelines/calibrate/tune_pnp.py``
per grid size, ``pipelines/calibrate/fit_rules.py`` through several sizes),
and saved in the prior's model card under ``"pnp_parameters"`` with a record of
how they were obtained; solvers use them by default when present. An entry may
also hold the ``relaxation`` its grid was run at (:func:`learned_relaxation`):
the over-relaxed iteration that settles faster with one prior can cycle with
another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ctpnp.physics import hu_difference_to_mu, mu_difference_to_hu

__all__ = [
    "REFERENCE_VARIANCE",
    "PnPParameters",
    "fit_dose_rule",
    "learned_parameters",
    "learned_relaxation",
    "log_linear_in_variance",
    "settings",
]

REFERENCE_VARIANCE = 1e-4
"""Mean post-log noise variance (dimensionless) at which the log-intercepts are stated;
about that of a 1e5-photon scan of the 256² validation slices (a 20 cm field)."""

CARD_KEY = "pnp_parameters"

SAME_FIXED_POINTS = {"pnp-drs": "pnp-admm"}
"""With the same denoiser and data step, DRS ``d = D(s), p = P(2d - s)`` is ADMM
``x = P(z - u), z = D(x + u), u = u + x - z`` after the change of variables
``s_k = x_(k+1) + u_k`` (then ``d = z``, ``p = x``), so both have the same fixed
points and share learned parameters."""


@dataclass(frozen=True)
class PnPParameters:
    """The dose rule above; the untrained default is ``sigma = 0.002/mm``, ``data_weight = 1/v``.

    Attributes:
        log_sigma_hu: log of the denoiser strength (HU) at ``v = REFERENCE_VARIANCE``.
        sigma_exponent: ``d log sigma / d log v``.
        log_data_scale: log of ``data_weight * v`` at ``v = REFERENCE_VARIANCE``.
        data_scale_exponent: ``d log(data_weight * v) / d log v``.
    """

    log_sigma_hu: float = math.log(mu_difference_to_hu(0.002))
    sigma_exponent: float = 0.0
    log_data_scale: float = 0.0
    data_scale_exponent: float = 0.0

    def vector(self) -> torch.Tensor:
        """``(4,)`` float64: the four fields in order."""
        return torch.tensor([self.log_sigma_hu, self.sigma_exponent, self.log_data_scale,
                             self.data_scale_exponent], dtype=torch.float64)

    @classmethod
    def from_vector(cls, theta: torch.Tensor) -> PnPParameters:
        """Inverse of :meth:`vector`."""
        return cls(*(float(t) for t in theta.detach().reshape(4)))

    def settings(self, variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sigma_mu_per_mm, data_weight)`` for ``(B,)`` noise variances; see :func:`settings`."""
        return settings(self.vector(), variance)

    def to_card(self) -> dict:
        """JSON form stored in a model card."""
        return {**asdict(self), "reference_variance": REFERENCE_VARIANCE}


def settings(theta: torch.Tensor, variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable dose rule: ``theta`` ``(4,)`` and ``(B,)`` variances → two ``(B,)`` tensors.

    Returns:
        ``sigma_mu_per_mm`` (1/mm, float32) and ``data_weight`` (dimensionless, float64).
    """
    theta = theta.double()
    log_ratio = torch.log(variance.double().cpu() / REFERENCE_VARIANCE)
    sigma_hu = torch.exp(theta[0] + theta[1] * log_ratio)
    data_weight = torch.exp(theta[2] + theta[3] * log_ratio) / variance.double().cpu()
    return hu_difference_to_mu(sigma_hu).float(), data_weight


def log_linear_in_variance(variances: list[float], values: list[float]) -> tuple[float, float]:
    """``(log_intercept, exponent)`` of ``log value = log_intercept + exponent log(v / v_ref)``.

    Least squares through per-dose choices ``values`` (any positive quantity)
    at estimated noise variances ``variances`` (exact through two points).

    Raises:
        ValueError: fewer than two distinct variances, or non-positive values.
    """
    table = torch.tensor([variances, values], dtype=torch.float64)
    if table.shape[1] < 2 or not bool((table > 0).all()) or bool(
            table[0].max() / table[0].min() < 1.0 + 1e-9):
        raise ValueError("a dose rule needs positive values at two or more distinct variances")
    logs = table.log()
    design = torch.stack([torch.ones_like(logs[0]), logs[0] - math.log(REFERENCE_VARIANCE)], 1)
    intercept, exponent = torch.linalg.lstsq(design, logs[1:].T).solution[:, 0]
    return float(intercept), float(exponent)


def fit_dose_rule(
    variances: list[float], sigmas_hu: list[float], data_scales: list[float]
) -> PnPParameters:
    """The PnP dose rule through per-dose choices (:func:`log_linear_in_variance`).

    Args:
        variances: estimated noise variance ``v`` of each tuned scan (at least
            two distinct values).
        sigmas_hu: the denoiser strength (HU) chosen for each scan.
        data_scales: the ``data_weight * v`` chosen for each scan.
    """
    return PnPParameters(*log_linear_in_variance(variances, sigmas_hu),
                         *log_linear_in_variance(variances, data_scales))


def learned_parameters(prior, solver: str) -> PnPParameters | None:
    """The parameters stored for ``solver`` (e.g. ``"pnp-admm"``) in the prior's card, if any.

    PnP-DRS without its own entry uses PnP-ADMM's (:data:`SAME_FIXED_POINTS`).

    Raises:
        ValueError: the card has an entry for ``solver`` with missing or bad fields.
    """
    card = getattr(prior, "card", None) or {}
    entries = card.get(CARD_KEY, {})
    entry = entries.get(solver, entries.get(SAME_FIXED_POINTS.get(solver)))
    if entry is None:
        return None
    names = ("log_sigma_hu", "sigma_exponent", "log_data_scale", "data_scale_exponent")
    try:
        values = [float(entry[name]) for name in names]
        reference = float(entry["reference_variance"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"model card {CARD_KEY}.{solver}: missing or bad field ({error})"
                         ) from None
    if not all(math.isfinite(v) for v in values) or not math.isclose(reference,
                                                                      REFERENCE_VARIANCE):
        raise ValueError(f"model card {CARD_KEY}.{solver}: non-finite values or "
                         f"reference_variance {reference} != {REFERENCE_VARIANCE}")
    return PnPParameters(*values)


def learned_relaxation(prior, solver: str) -> float | None:
    """The relaxation ``alpha`` stored with ``solver``'s rule in the prior's card, if any.

    Raises:
        ValueError: the entry's ``relaxation`` is not a number in (0, 2).
    """
    card = getattr(prior, "card", None) or {}
    entries = card.get(CARD_KEY, {})
    entry = entries.get(solver, entries.get(SAME_FIXED_POINTS.get(solver))) or {}
    if "relaxation" not in entry:
        return None
    try:
        alpha = float(entry["relaxation"])
    except (TypeError, ValueError):
        alpha = math.nan
    if not 0.0 < alpha < 2.0:
        raise ValueError(f"model card {CARD_KEY}.{solver}.relaxation must be in (0, 2), "
                         f"got {entry['relaxation']!r}")
    return alpha
