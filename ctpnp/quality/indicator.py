"""The calibrated implausibility map: a z-score per region that means the same on every scan.

Per region of :data:`~ctpnp.quality.maps.REGION_PX`² pixels inside the body, the
log of the region mean of each map of :mod:`ctpnp.quality.maps` is a feature:
the prior residual and the prior asymmetry (HU, floored at :data:`FLOOR_HU`),
the data consistency and, where the prior has one, the prior map (nats per
pixel, floored at :data:`PRIOR_FLOOR_NATS`). Each is turned into a robust
z-score against the same feature on clean validation reconstructions at the
same dose (median and 1.4826 · MAD, so a clean region is about N(0, 1)).

The **implausibility** of a region is its residual z-score plus its asymmetry
z-score, centred and scaled again on the clean regions: the first says how much
the prior would change the region, the second how little the prior agrees with
itself about it. The data and prior-map z-scores are reported beside it but
not added: on reconstructions of validation slices with inserted failures
(metal, air, a foreign texture, 60 views, too strong a prior, phantoms; the
calibration's slices, not the benchmark's) the sum of the two denoiser
features ranked failed regions best (region AUROC 0.69–0.96 per kind), while
adding the data z-score lowered it on clean slices and the Prox-denoiser's prior
map (the prior this was chosen on) carried almost no contrast between regions.

The denoiser that makes the residual and asymmetry maps is the calibration's
**judge**: a registry prior, the reconstruction's own or another one. The
Gaussian-mixture patch prior's reconstructions are judged by the
Prox-denoiser, chosen by ``pipelines/calibrate/choose_judge.py`` on the
calibration's failure cases (margins fixed before the run, 2026-12-03): the
Prox-denoiser's two maps ranked failed regions of the mixture's reconstructions
better than the mixture's own (mean region AUROC over the kinds and the clean
slices 0.847 against 0.797; air bubble 0.95 against 0.77, phantoms 0.91 against
0.68): a patch mixture that knows air and edges everywhere moves a bubble or a
phantom's edges little, a network trained on whole anatomy moves them.

The dose is read from the post-log noise variance (the solvers' estimate), and the
statistics are interpolated linearly in its log between the calibrated doses (held
constant beyond them).

Per slice, the **score** is the largest implausibility of its regions; the
slice is **flagged** when the score exceeds the threshold at its dose, chosen
per dose on the clean calibration slices as the quantile
:data:`CLEAN_FLAG_QUANTILE` of their scores (so about 2 % of clean slices are
flagged at every dose: a low-dose slice has more regions far out in the tail,
so one threshold for all doses would flag low doses more often) and
interpolated like the statistics; the flagged regions are those above it. A
slice's score is a maximum, so the quantile is that of a Gumbel distribution
fitted to the clean scores by their mean and standard deviation
(:func:`gumbel_quantile`): with a few dozen slices per dose the empirical 98 %
quantile is about their second-largest score and moves with every slice.

A :class:`Calibration` belongs to one prior and its weights, and to its judge's:
it stores the :func:`~ctpnp.priors.registry.fingerprint` of both, and
:func:`load_calibration` refuses it for other weights of either. It also depends on
the solver's defaults (the statistics are those of its reconstructions), which no
fingerprint covers: re-run the calibration when they change. The shipped ones are
``ctpnp/quality/calibration/<prior>.json`` (here rather than beside the weights,
because the weights' folder belongs to training and a calibration must be
re-made whenever either changes); ``pipelines/calibrate/quality.py`` writes them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ctpnp.priors import registry
from ctpnp.quality.maps import REGION_PX, QualityMaps, body_regions, region_means

__all__ = ["CALIBRATION_DIR", "CLEAN_FLAG_QUANTILE", "Calibration", "DoseStatistics",
           "RegionScores", "SliceVerdict", "calibration_path", "fit_calibration",
           "gumbel_quantile",
           "load_calibration", "load_judge", "region_features", "region_scores", "slice_verdicts"]

CALIBRATION_DIR = Path(__file__).with_name("calibration")
FORMAT = "ctpnp-quality-calibration/3"
CLEAN_FLAG_QUANTILE = 0.98
"""The flag threshold is this quantile of the scores of clean calibration slices."""
MAD_TO_STD = 1.4826
PRIOR_FLOOR_NATS = 1e-4
"""Region means of the prior map are floored at this (nats per pixel) before the log."""
FLOOR_HU = 1e-3
"""Region means of the denoiser maps are floored at this (HU) before the log."""
FEATURES = ("residual", "asymmetry", "data", "prior")
"""The region features, in the order of :class:`DoseStatistics`' fields."""


@dataclass(frozen=True)
class DoseStatistics:
    """Robust centre and scale (median, 1.4826 · MAD) of the region features at one dose,
    of the implausibility before its final centring (``combined_*``), and the flag
    threshold ``threshold_z`` at this dose.

    ``prior_*`` are ``None`` for a prior without a map.
    """

    log10_noise_variance: float
    residual_center: float
    residual_scale: float
    asymmetry_center: float
    asymmetry_scale: float
    data_center: float
    data_scale: float
    combined_center: float
    combined_scale: float
    threshold_z: float
    prior_center: float | None = None
    prior_scale: float | None = None


@dataclass(frozen=True)
class Calibration:
    """Statistics of clean validation reconstructions of one prior (see the module docstring).

    ``judge`` names the registry prior whose denoiser makes the residual and asymmetry
    maps (``prior`` itself or another), ``judge_fingerprint`` its weights'.
    """

    prior: str
    fingerprint: str
    judge: str
    judge_fingerprint: str
    region_px: int
    doses: tuple[DoseStatistics, ...]
    provenance: dict

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self), "doses": [asdict(d) for d in self.doses]}

    @classmethod
    def from_dict(cls, content: dict, source: str) -> Calibration:
        """Raises ``ValueError`` naming ``source`` for a file of another format."""
        try:
            if content["format"] != FORMAT:
                raise ValueError(f"format {content['format']!r}, expected {FORMAT!r}")
            doses = tuple(sorted((DoseStatistics(**d) for d in content["doses"]),
                                 key=lambda d: d.log10_noise_variance))
            return cls(str(content["prior"]), str(content["fingerprint"]), str(content["judge"]),
                       str(content["judge_fingerprint"]), int(content["region_px"]), doses,
                       dict(content.get("provenance", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: not a quality calibration ({err})") from None

    def at(self, noise_variance: float) -> DoseStatistics:
        """The statistics at a post-log noise variance, interpolated in its log10."""
        key = math.log10(noise_variance)
        doses = self.doses
        if key <= doses[0].log10_noise_variance or len(doses) == 1:
            return doses[0]
        if key >= doses[-1].log10_noise_variance:
            return doses[-1]
        upper = next(k for k, d in enumerate(doses) if d.log10_noise_variance >= key)
        low, high = doses[upper - 1], doses[upper]
        t = ((key - low.log10_noise_variance)
             / (high.log10_noise_variance - low.log10_noise_variance))
        values = {name: None if a is None else (1 - t) * a + t * b
                  for name, a, b in ((f, getattr(low, f), getattr(high, f))
                                     for f in low.__dataclass_fields__)}
        return DoseStatistics(**{**values, "log10_noise_variance": key})


@dataclass(frozen=True)
class RegionScores:
    """Per-region z-scores ``(B, 1, h, w)`` float64, NaN outside the body.

    ``implausibility`` is the calibrated combination (see the module docstring), the
    others are the z-scores of single features; ``prior`` is ``None`` for a prior
    without a map. ``threshold_z`` ``(B,)``: each slice's flag threshold (its dose's).
    """

    threshold_z: torch.Tensor
    implausibility: torch.Tensor
    residual: torch.Tensor
    asymmetry: torch.Tensor
    data: torch.Tensor
    prior: torch.Tensor | None


@dataclass(frozen=True)
class SliceVerdict:
    """One slice: ``score`` (largest region implausibility, z), ``flagged`` (score above
    ``threshold_z``) and ``regions``: ``(row_px, col_px, z)`` of the top-left corner of
    every region above the threshold, largest first."""

    score: float
    flagged: bool
    threshold_z: float
    regions: tuple[tuple[int, int, float], ...]

    def to_dict(self) -> dict:
        return {"score_z": self.score, "flagged": self.flagged, "threshold_z": self.threshold_z,
                "flagged_regions": [{"row_px": r, "col_px": c, "z": z}
                                    for r, c, z in self.regions]}


def calibration_path(prior: str) -> Path:
    """Where the shipped calibration of registry prior ``prior`` lives."""
    return CALIBRATION_DIR / f"{prior}.json"


def load_calibration(prior: str, fingerprint: str, path: Path | str | None = None
                     ) -> Calibration:
    """The calibration of ``prior`` (default file :func:`calibration_path`), checked against the
    prior's current ``fingerprint`` (:func:`ctpnp.priors.registry.fingerprint`).

    Raises ``ValueError`` naming the file when it is missing, unreadable, or was made
    for other weights of the prior or of its judge (re-run ``pipelines/calibrate/quality.py``).
    """
    path = calibration_path(prior) if path is None else Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no quality calibration for prior {prior!r}; run "
                         "pipelines/calibrate/quality.py")
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable quality calibration ({err})") from None
    calibration = Calibration.from_dict(content, str(path))
    if calibration.fingerprint != fingerprint:
        raise ValueError(f"{path}: field 'fingerprint' is for other weights of prior {prior!r} "
                         f"({calibration.fingerprint[:12]}, the prior is {fingerprint[:12]}); "
                         "re-run pipelines/calibrate/quality.py")
    if calibration.judge != calibration.prior:
        judge_fingerprint = registry.fingerprint(calibration.judge)
        if judge_fingerprint != calibration.judge_fingerprint:
            raise ValueError(f"{path}: field 'judge_fingerprint' is for other weights of judge "
                             f"{calibration.judge!r} ({calibration.judge_fingerprint[:12]}, the "
                             f"judge is {judge_fingerprint[:12]}); re-run "
                             "pipelines/calibrate/quality.py")
    return calibration


def load_judge(calibration: Calibration, prior, device: str | torch.device = "cpu"):
    """The prior whose denoiser makes the maps ``calibration`` scores: ``prior`` (the
    reconstruction's, already loaded) when the calibration judges by its own prior, else
    ``calibration.judge`` loaded on ``device``."""
    return prior if calibration.judge == calibration.prior else registry.load(
        calibration.judge, device=device)


def region_features(maps: QualityMaps, x: torch.Tensor, region_px: int = REGION_PX
                    ) -> dict[str, torch.Tensor]:
    """The log region means (see the module docstring) of each map, keyed by
    :data:`FEATURES` (``prior`` absent without a prior map), ``(B, 1, h, w)`` float64,
    NaN outside the body of ``x``."""
    inside = body_regions(x, region_px).cpu()
    nan = torch.tensor(math.nan, dtype=torch.float64)
    floors = {"residual": (maps.residual_hu, FLOOR_HU),
              "asymmetry": (maps.asymmetry_hu, FLOOR_HU),
              "data": (maps.data_consistency, 1e-12),
              "prior": (maps.prior_nats, PRIOR_FLOOR_NATS)}
    return {name: torch.where(inside, region_means(values, region_px).clamp_min(floor).log()
                              .cpu(), nan)
            for name, (values, floor) in floors.items() if values is not None}


def region_scores(maps: QualityMaps, x: torch.Tensor, calibration: Calibration) -> RegionScores:
    """The z-scores of every region of reconstructions ``x`` ``(B, 1, H, W)`` (μ, 1/mm)."""
    if (maps.prior_nats is None) != (calibration.doses[0].prior_center is None):
        raise ValueError(f"the calibration of prior {calibration.prior!r} and the maps disagree "
                         "on whether there is a prior map")
    features = region_features(maps, x, calibration.region_px)
    items = [_z_scores({name: f[k] for name, f in features.items()}, calibration.at(v))
             for k, v in enumerate(maps.noise_variance.tolist())]
    stacked = {name: torch.stack([item[name] for item in items]) for name in items[0]}
    thresholds = torch.tensor([calibration.at(v).threshold_z
                               for v in maps.noise_variance.tolist()], dtype=torch.float64)
    return RegionScores(thresholds, stacked["implausibility"], stacked["residual"],
                        stacked["asymmetry"], stacked["data"], stacked.get("prior"))


def _z_scores(features: dict[str, torch.Tensor], stats: DoseStatistics
              ) -> dict[str, torch.Tensor]:
    """The z-score of each of one slice's region ``features`` and their ``implausibility``."""
    z = {name: (value - getattr(stats, f"{name}_center")) / getattr(stats, f"{name}_scale")
         for name, value in features.items()}
    z["implausibility"] = ((z["residual"] + z["asymmetry"] - stats.combined_center)
                           / stats.combined_scale)
    return z


def slice_verdicts(scores: RegionScores, calibration: Calibration) -> list[SliceVerdict]:
    """Per batch item: score, flag and flagged regions (see :class:`SliceVerdict`)."""
    verdicts = []
    px = calibration.region_px
    for z, threshold in zip(scores.implausibility[:, 0].numpy(), scores.threshold_z.tolist(),
                            strict=True):
        finite = np.isfinite(z)
        score = float(z[finite].max()) if finite.any() else math.nan
        rows, cols = np.nonzero(np.where(finite, z, -np.inf) > threshold)
        order = np.argsort(-z[rows, cols])
        regions = tuple((int(rows[k]) * px, int(cols[k]) * px, float(z[rows[k], cols[k]]))
                        for k in order)
        verdicts.append(SliceVerdict(score, bool(score > threshold), threshold, regions))
    return verdicts


def gumbel_quantile(maxima: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the Gumbel distribution with the mean and standard deviation of
    ``maxima`` (method of moments: scale ``beta = std sqrt(6) / pi``, location ``mean -
    0.5772 beta``). Raises ``ValueError`` for fewer than 3 finite values."""
    maxima = maxima[np.isfinite(maxima)]
    if maxima.size < 3:
        raise ValueError(f"a Gumbel fit needs at least 3 slice scores, got {maxima.size}")
    beta = float(maxima.std(ddof=1)) * math.sqrt(6.0) / math.pi
    location = float(maxima.mean()) - np.euler_gamma * beta
    return location - beta * math.log(-math.log(quantile))


def _robust(values: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 MAD)`` of the finite values."""
    values = values[np.isfinite(values)]
    if values.size < 10:
        raise ValueError(f"calibration needs at least 10 body regions per dose, got {values.size}")
    center = float(np.median(values))
    return center, max(MAD_TO_STD * float(np.median(np.abs(values - center))), 1e-12)


def fit_calibration(prior: str, fingerprint: str, clean: list[tuple[str, float, dict]],
                    provenance: dict, judge: tuple[str, str] | None = None,
                    region_px: int = REGION_PX) -> Calibration:
    """Fit a :class:`Calibration` on clean reconstructions.

    Args:
        prior, fingerprint: the prior it is for.
        judge: ``(name, fingerprint)`` of the prior whose denoiser made the features' residual
            and asymmetry maps; default the prior itself.
        clean: ``(dose, noise_variance, features)`` per clean slice: ``dose`` names
            the scan protocol (slices of one dose are pooled, whatever their
            anatomy), ``features`` come from :func:`region_features` of that slice
            alone. A dose's statistics are placed at the mean log10 variance of
            its slices.
        provenance: what the slices were (stored as is).

    A dose's threshold is the :data:`CLEAN_FLAG_QUANTILE` quantile of the Gumbel fit to its
    clean slices' scores under the fitted statistics (:func:`gumbel_quantile`).
    """
    groups: dict[str, list[tuple[float, dict]]] = {}
    for dose, variance, features in clean:
        groups.setdefault(dose, []).append((variance, features))
    doses = []
    for group in groups.values():
        log_variance = float(np.mean([math.log10(v) for v, _ in group]))
        pooled = {name: np.concatenate([f[name].numpy().ravel() for _, f in group])
                  for name in group[0][1]}
        stats = {f"{name}_{part}": value for name in FEATURES if name in pooled
                 for part, value in zip(("center", "scale"), _robust(pooled[name]),
                                        strict=True)}
        raw = DoseStatistics(log_variance, combined_center=0.0, combined_scale=1.0,
                             threshold_z=math.inf, **stats)
        total = [_z_scores(f, raw)["implausibility"].numpy() for _, f in group]
        center, scale = _robust(np.concatenate([t.ravel() for t in total]))
        scores = [(float(np.nanmax(t)) - center) / scale for t in total]
        threshold = round(gumbel_quantile(np.asarray(scores), CLEAN_FLAG_QUANTILE), 3)
        doses.append(replace(raw, combined_center=center, combined_scale=scale,
                             threshold_z=threshold))
    doses.sort(key=lambda d: d.log10_noise_variance)
    judge_name, judge_fingerprint = (prior, fingerprint) if judge is None else judge
    return Calibration(prior, fingerprint, judge_name, judge_fingerprint, region_px,
                       tuple(doses), provenance)
