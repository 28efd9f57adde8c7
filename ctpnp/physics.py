"""X-ray physics of a CT measurement: HU ⇄ μ, photon counts, post-log data.

Conventions: μ in 1/mm, HU = 1000 (μ − μ_water) / μ_water, line integrals
(post-log data) dimensionless, photon counts per detector reading.
"""

from __future__ import annotations

import torch

MU_WATER_PER_MM = 0.0192
"""Linear attenuation of water near 70 keV effective energy (1/mm)."""

MIN_COUNTS = 0.5
"""Counts are clamped to at least this before the log (a zero or negative
reading, possible with electronic noise, would give an infinite line integral)."""


def hu_to_mu(hu: torch.Tensor, mu_water_per_mm: float = MU_WATER_PER_MM) -> torch.Tensor:
    """CT numbers (HU) → linear attenuation μ (1/mm), any shape."""
    return mu_water_per_mm * (1.0 + hu / 1000.0)


def mu_to_hu(mu_per_mm: torch.Tensor, mu_water_per_mm: float = MU_WATER_PER_MM) -> torch.Tensor:
    """Linear attenuation μ (1/mm) → CT numbers (HU), any shape."""
    return 1000.0 * (mu_per_mm / mu_water_per_mm - 1.0)


def hu_difference_to_mu(delta_hu: float | torch.Tensor,
                        mu_water_per_mm: float = MU_WATER_PER_MM) -> float | torch.Tensor:
    """An HU difference or noise std → the same in μ (1/mm); float or tensor."""
    return delta_hu * mu_water_per_mm / 1000.0


def mu_difference_to_hu(delta_mu_per_mm: float | torch.Tensor,
                        mu_water_per_mm: float = MU_WATER_PER_MM) -> float | torch.Tensor:
    """A μ difference or noise std (1/mm) → the same in HU; float or tensor."""
    return delta_mu_per_mm * 1000.0 / mu_water_per_mm


def simulate_counts(
    line_integrals: torch.Tensor,
    photons: float | torch.Tensor,
    *,
    electronic_noise: float = 0.0,
    seed: int | None = None,
) -> torch.Tensor:
    """Noisy detector readings ``N ~ Poisson(I0 exp(-p)) + Normal(0, sigma_e^2)``.

    Args:
        line_integrals: ``(B, 1, views, channels)`` noiseless post-log data ``p``.
        photons: incident photons per reading ``I0``: a scalar or a tensor that
            broadcasts against the sinogram, e.g. ``(channels,)`` for a bowtie.
        electronic_noise: standard deviation of the additive Gaussian readout
            noise, in photon counts.
        seed: makes the draw reproducible (same seed, same counts).

    Returns:
        Counts, same shape as ``line_integrals`` (float, may be negative with
        electronic noise).
    """
    incident = _incident(photons, line_integrals)
    if electronic_noise < 0:
        raise ValueError(f"electronic_noise={electronic_noise} must be non-negative")
    generator = torch.Generator(device=line_integrals.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    mean = incident * torch.exp(-line_integrals.double())
    counts = torch.poisson(mean, generator=generator)
    if electronic_noise > 0:
        counts = counts + electronic_noise * torch.randn(
            counts.shape, generator=generator, dtype=counts.dtype, device=counts.device)
    return counts.to(line_integrals.dtype)


def counts_to_line_integrals(counts: torch.Tensor, photons: float | torch.Tensor) -> torch.Tensor:
    """Post-log data ``-log(max(N, MIN_COUNTS) / I0)``, same shape as ``counts``."""
    incident = _incident(photons, counts)
    return torch.log(incident / counts.double().clamp_min(MIN_COUNTS)).to(counts.dtype)


def simulate_low_dose(
    line_integrals: torch.Tensor,
    photons: float | torch.Tensor,
    *,
    electronic_noise: float = 0.0,
    seed: int | None = None,
) -> torch.Tensor:
    """Noisy post-log data of a scan with ``photons`` incident per reading.

    See :func:`simulate_counts` for the arguments; returns the same shape.
    """
    counts = simulate_counts(line_integrals, photons, electronic_noise=electronic_noise,
                             seed=seed)
    return counts_to_line_integrals(counts, photons)


def statistical_weights(counts: torch.Tensor, electronic_noise: float = 0.0) -> torch.Tensor:
    """Inverse variance of post-log data, for a weighted least-squares data term.

    ``Var[-log N] ≈ (N + sigma_e^2) / N^2``, so the weight is
    ``N^2 / (N + sigma_e^2)`` (``N`` clamped to :data:`MIN_COUNTS`).
    """
    clamped = counts.clamp_min(MIN_COUNTS)
    return clamped**2 / (clamped + electronic_noise**2)


def _incident(photons: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    incident = torch.as_tensor(photons, dtype=torch.float64, device=like.device)
    if not bool(torch.isfinite(incident).all()) or bool((incident <= 0).any()):
        raise ValueError(f"photons must be positive and finite, got {photons}")
    try:
        torch.broadcast_shapes(incident.shape, like.shape)
    except RuntimeError:
        raise ValueError(
            f"photons: shape {tuple(incident.shape)} does not broadcast against the "
            f"sinogram shape {tuple(like.shape)} (use a scalar or (channels,))"
        ) from None
    if torch.broadcast_shapes(incident.shape, like.shape) != like.shape:
        raise ValueError(f"photons: shape {tuple(incident.shape)} would enlarge the sinogram "
                         f"shape {tuple(like.shape)}")
    return incident


MAX_LINE_INTEGRAL = 20.0
"""Post-log values are capped here in :func:`estimate_noise_variance` (``exp(20)`` is
5e8: more photons per reading than a scanner counts), so a corrupt reading cannot
overflow the mean."""
NOISE_BLOCK_CHANNELS = 16
"""Channels per block of :func:`estimate_noise_variance`: short enough for the variance
to be constant within a block, long enough for a robust median."""


def estimate_noise_variance(line_integrals: torch.Tensor) -> torch.Tensor:
    """Per-item mean variance of the noise in post-log sinograms, estimated from the data.

    The variance of post-log data differs from ray to ray by orders of magnitude:
    with ``N0`` photons per reading it is ``exp(y) / N0`` (:func:`statistical_weights`).
    The image noise of a reconstruction follows its mean over the rays (FBP's is
    ``~sqrt(mean v)`` times a constant of the geometry), which the median over all
    rays misses beside a large body, where most rays are short. So ``1 / N0`` is
    estimated as the median over blocks of :data:`NOISE_BLOCK_CHANNELS` channels of
    (local variance) / (mean ``exp(y)``), the local variance from second differences
    along the channels (white noise of variance ``v`` gives differences of variance
    ``6 v``; the median absolute deviation is blind to edges), and the mean variance
    is ``mean(exp(y)) / N0``: blocks where anatomy, not noise, dominates the
    differences are outvoted, as long as they are fewer than half.

    Args:
        line_integrals: ``(B, 1, views, channels)`` post-log data, at least 3 channels.

    Returns:
        ``(B,)`` float64 mean variance (dimensionless), the inverse of a natural
        least-squares data weight.
    """
    y = line_integrals.double()
    second = y[..., 2:] - 2 * y[..., 1:-1] + y[..., :-2]
    block = min(NOISE_BLOCK_CHANNELS, second.shape[-1])
    usable = second.shape[-1] // block * block

    def blocks(values: torch.Tensor) -> torch.Tensor:
        return values[..., :usable].unflatten(-1, (usable // block, block))

    differences = blocks(second)
    deviation = (differences - differences.median(dim=-1, keepdim=True).values).abs()
    local_variance = (1.4826 * deviation.median(dim=-1).values) ** 2 / 6
    transmission_inverse = y.clamp(max=MAX_LINE_INTEGRAL).exp()
    level = blocks(transmission_inverse[..., 1:-1]).mean(dim=-1)
    per_photon = (local_variance / level).flatten(1).median(dim=1).values
    return per_photon * transmission_inverse.flatten(1).mean(dim=1)
