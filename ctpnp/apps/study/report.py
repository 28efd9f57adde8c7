"""The study's tables: ``results.csv``, ``inserts.csv`` and the Markdown report ``study.md``.

The Markdown states what was measured (numbers, set-up, limits); it draws no
conclusion the tables do not show.
"""

from __future__ import annotations

import csv
import inspect
import io
import math
from collections.abc import Sequence
from pathlib import Path

from ctpnp.apps.study.config import MethodSpec, StudyConfig
from ctpnp.atomic import staged_file
from ctpnp.evaluation import PIXEL_MM
from ctpnp.figures.study import FIGURES, mean_by
from ctpnp.quality import FULL_WINDOW, SOFT_TISSUE_WINDOW, Calibration
from ctpnp.quality.detection import FAILED_RMSE_HU
from ctpnp.registry import solver

__all__ = ["RESULT_COLUMNS", "write_report"]

RESULT_COLUMNS = ("scene", "family", "photons", "method", "psnr_full_db", "psnr_soft_db",
                  "ssim_full", "ssim_soft", "rmse_hu", "n_iter", "converged", "diverged",
                  "seconds", "noise_std_hu", "mean_log_prior", "pearson", "spearman",
                  "implausibility_score_z", "implausibility_threshold_z",
                  "implausibility_flagged", "implausibility_regions", "failed_regions",
                  "implausibility_auroc", "implausibility_spearman")
"""Columns of ``results.csv``, one row per reconstruction."""

INSERT_COLUMNS = ("scene", "photons", "method", "insert", "nominal_hu", "measured_hu",
                  "error_hu")


def write_report(out_dir: Path, config: StudyConfig, calibration: Calibration,
                 references: Sequence[dict], results: Sequence[dict]) -> Path:
    """Write ``results.csv``, ``inserts.csv`` and ``study.md``; returns the Markdown's path.

    ``calibration`` is the one that scored the implausibility of ``results``.
    """
    out_dir = Path(out_dir)
    _write_text(out_dir / "results.csv", _csv(RESULT_COLUMNS, results))
    _write_text(out_dir / "inserts.csv", _csv(INSERT_COLUMNS, _insert_rows(results)))
    path = out_dir / "study.md"
    _write_text(path, "\n".join(_markdown(config, calibration, references, results)) + "\n")
    return path


def _markdown(config: StudyConfig, calibration: Calibration, references, results) -> list[str]:
    methods = [m.name for m in config.methods]
    families = list(dict.fromkeys(s.family for s in config.scenes))
    lines = [
        "# Phantom validation study",
        "",
        f"Configuration: `{config.source}`. Phantoms on a {config.size}² grid of "
        f"{config.pixel_mm:g} mm pixels (the real CT slice on its own grid), clinical curved "
        f"fan beam, {config.views} views, Poisson noise at "
        f"{', '.join(f'{p:g}' for p in config.photons)} photons per reading, one noise "
        "realisation per scene and dose, shared by all methods. Analytic phantoms are "
        "projected with exact line integrals, the real slice from a grid twice as fine: the "
        "data never come from the reconstruction's projector.",
        "",
        f"PSNR/SSIM in the full window [{FULL_WINDOW.low_hu:g}, {FULL_WINDOW.high_hu:g}] HU "
        f"and the soft-tissue window [{SOFT_TISSUE_WINDOW.low_hu:g}, "
        f"{SOFT_TISSUE_WINDOW.high_hu:g}] HU; RMSE in the full window. The log-prior map "
        f"(`{config.log_prior}`, nats per pixel, larger = less plausible) is computed on every "
        "image; its mean and its Pearson (r) / Spearman (ρ) correlation with the absolute "
        "error are taken over the object (above -500 HU, holes filled). Compute time: "
        f"{sum(r['seconds'] for r in results):.0f} s of reconstruction, "
        f"{sum(r['map_seconds'] for r in (*references, *results)):.0f} s of log-prior maps and "
        f"{sum(r['implausibility_seconds'] for r in results):.0f} s of implausibility.",
        "",
        "## Scenes and methods",
        "",
        *_table(["scene", "family", "source", "pixel (mm)", "mean log-prior of the reference"],
                [[s.name, s.family, _scene_source(s),
                  f"{_find(references, scene=s.name)['pixel_mm']:g}",
                  _fmt(_find(references, scene=s.name)["mean_log_prior"], 4)]
                 for s in config.scenes]),
        "",
        *_table(["method", "solver", "prior", "equivariant", "stops when"],
                [[m.name, m.solver, m.prior or "—", "yes" if m.equivariant else "no",
                  _stopping(m)] for m in config.methods]),
        "",
        "Random anatomy is the priors' training family (held-out seeds), drawn here for "
        f"the grid's {config.size * config.pixel_mm:g} mm field of view; the analytic "
        "phantoms are scaled into the field of view, so their structures are smaller than "
        "in their definitions.",
        "",
        "## Quality vs dose",
        "",
        f"![PSNR and SSIM vs dose]({FIGURES['quality_vs_dose']})",
        "",
        *_table(["family", "photons", *methods],
                [[family, f"{p:g}", *(_psnr_pair(results, family=family, method=m, photons=p)
                                      for m in methods)]
                 for family in families for p in config.photons]),
        "",
        "Mean PSNR full / soft-tissue window (dB) over the scenes of each family.",
        "",
        *_mismatch(config, references, results, families),
        *_implausibility(config, calibration, results, families),
        *_rois(config, results, methods),
        "## Convergence",
        "",
        f"![PSNR per iteration]({FIGURES['convergence']})",
        "",
        *_table(["method", "cases", "converged", "diverged", "mean iterations", "mean s"],
                [[m.name, str(len(rs := [r for r in results if r["method"] == m.name])),
                  str(sum(bool(r["converged"]) for r in rs)) if m.iterative else "—",
                  str(sum(bool(r["diverged"]) for r in rs)),
                  _fmt(mean_by(rs, "n_iter"), 1), _fmt(mean_by(rs, "seconds"), 1)]
                 for m in config.methods]),
        "",
        "Converged means stopped by the relative-change rule before the iteration budget.",
        "",
        "## Images",
        "",
        f"![Reconstructions at the lowest dose]({FIGURES['montage']})",
        "",
        f"![Error vs log-prior map]({FIGURES['log_prior_vs_error']})",
        "",
        "## All cases",
        "",
        *_table(["scene", "photons", "method", "PSNR full", "PSNR soft", "SSIM full",
                 "SSIM soft", "RMSE HU", "iters", "conv.", "div.", "s", "log-prior", "r", "ρ",
                 "score z", "flagged", "AUROC"],
                [[r["scene"], f"{r['photons']:g}", r["method"], _fmt(r["psnr_full_db"], 2),
                  _fmt(r["psnr_soft_db"], 2), _fmt(r["ssim_full"], 3), _fmt(r["ssim_soft"], 3),
                  _fmt(r["rmse_hu"], 1), str(r["n_iter"]),
                  "—" if r["converged"] is None else ("yes" if r["converged"] else "no"),
                  "yes" if r["diverged"] else "no", _fmt(r["seconds"], 1),
                  _fmt(r["mean_log_prior"], 4), _fmt(r["pearson"], 2), _fmt(r["spearman"], 2),
                  _fmt(r["implausibility_score_z"], 2),
                  "yes" if r["implausibility_flagged"] else "no",
                  _fmt(r["implausibility_auroc"], 2)]
                 for r in results]),
        "",
        "## Limits of these measurements",
        "",
        "- One noise realisation per scene and dose and few scenes per family; no "
        "confidence intervals are computed, so small differences may not repeat with other "
        "seeds.",
        "- Every iterative method runs to its own convergence rule (relative change of "
        "the iterate below its threshold) or its iteration cap; a method stopped by the "
        "cap is measured where it stopped (see Convergence).",
        "- The real slice's reference is itself a clinical image with noise, and its anatomy "
        "runs past the image edge (truncated projections); its pixels differ from the "
        "0.8 mm the priors were trained at.",
        "- Every method runs with its defaults (weights following the noise estimated from "
        "the data); nothing is tuned per scene or dose.",
    ]
    return lines


def _mismatch(config: StudyConfig, references, results, families) -> list[str]:
    """Prior mismatch: PnP gain over FBP per family, what equivariance changes, the map."""
    pnp = [m for m in config.methods if m.prior is not None]
    fbp = next((m.name for m in config.methods if m.solver == "fbp"), None)
    lines = ["## Prior mismatch: in-family, out-of-family, real CT", ""]
    if fbp is not None and pnp:
        rows = []
        for method in pnp:
            for value, label in (("psnr_full_db", "full"), ("psnr_soft_db", "soft")):
                rows.append([method.name, label, *(_fmt(_gain(results, value, family, method.name,
                                                              fbp), 2, sign=True)
                                                   for family in families)])
        lines += [f"Gain in PSNR over {fbp} (dB), mean over scenes and doses:", "",
                  *_table(["method", "window", *families], rows), ""]
        if "in-family" in families and "out-of-family" in families:
            for method in pnp:
                inside = _gain(results, "psnr_full_db", "in-family", method.name, fbp)
                outside = _gain(results, "psnr_full_db", "out-of-family", method.name, fbp)
                lines.append(f"- {method.name}: {_fmt(inside, 2, sign=True)} dB over {fbp} "
                             f"in-family, {_fmt(outside, 2, sign=True)} dB out-of-family "
                             f"(full window; difference {_fmt(inside - outside, 2)} dB).")
            lines.append("")
    pairs = [(plain, twin) for twin in pnp if twin.equivariant for plain in pnp
             if not plain.equivariant and (plain.solver, plain.prior) == (twin.solver, twin.prior)]
    if pairs:
        rows = [[f"{twin.name} − {plain.name}", label,
                 *(_fmt(mean_by(results, value, family=f, method=twin.name)
                        - mean_by(results, value, family=f, method=plain.name), 2, sign=True)
                   for f in families)]
                for plain, twin in pairs
                for value, label in (("psnr_full_db", "full"), ("psnr_soft_db", "soft"))]
        lines += ["Equivariant prior (random flips/rotations) minus the plain one, PSNR (dB), "
                  "mean over scenes and doses:", "",
                  *_table(["difference", "window", *families], rows), ""]
    rows = [["reference images", *(_fmt(mean_by(references, "mean_log_prior", family=f), 4)
                                   for f in families)]]
    rows += [[f"{m.name}: mean log-prior", *(_fmt(mean_by(results, "mean_log_prior", family=f,
                                                          method=m.name), 4) for f in families)]
             for m in config.methods]
    rows += [[f"{m.name}: r / ρ with abs. error",
              *(f"{_fmt(mean_by(results, 'pearson', family=f, method=m.name), 2)} / "
                f"{_fmt(mean_by(results, 'spearman', family=f, method=m.name), 2)}"
                for f in families)]
             for m in config.methods]
    lines += [f"Does the `{config.log_prior}` log-prior map flag the mismatch? Mean log-prior "
              "(nats/pixel, over the object) and its correlation with the absolute error, mean "
              "over scenes and doses:", "", *_table(["", *families], rows), ""]
    return lines


def _implausibility(config: StudyConfig, calibration: Calibration, results, families
                    ) -> list[str]:
    """The calibrated implausibility per family and method, and what it was calibrated on."""
    provenance = calibration.provenance
    slices = provenance.get("slices", [])
    photons = sorted({s["photons"] for s in slices if "photons" in s})
    thresholds = ", ".join(f"{d.threshold_z:.2f}" for d in calibration.doses)
    rows = []
    for family in families:
        for method in (m.name for m in config.methods):
            cases = [r for r in results if (r["family"], r["method"]) == (family, method)]
            if not cases:
                continue
            defined = sum(math.isfinite(r["implausibility_auroc"]) for r in cases)
            rows.append([family, method,
                         _fmt(mean_by(cases, "implausibility_score_z", finite=True), 2),
                         f"{sum(bool(r['implausibility_flagged']) for r in cases)}/{len(cases)}",
                         f"{sum(r['failed_regions'] for r in cases)}/"
                         f"{sum(r['implausibility_regions'] for r in cases)}",
                         f"{_fmt(mean_by(cases, 'implausibility_auroc', finite=True), 2)} "
                         f"({defined})",
                         _fmt(mean_by(cases, "implausibility_spearman", finite=True), 2)])
    return [
        "## Implausibility (calibrated quality indicator)", "",
        f"![Implausibility of reconstructions]({FIGURES['implausibility']})", "",
        f"Every reconstruction is scored by the `{calibration.prior}` prior's implausibility "
        f"(`ctpnp.quality.indicator`): per region of {calibration.region_px}² pixels inside "
        "the body, the z-score sum of the prior residual |x − D(x)| and the prior asymmetry "
        f"|D(x) − (D(xᵀ))ᵀ| of the calibration's judge, the `{calibration.judge}` prior's "
        "denoiser D; a case's score is its largest region z, and the case is "
        "flagged when that exceeds the threshold at its dose. The calibration is made of "
        f"{len(slices)} clean PnP-ADMM reconstructions (the prior's defaults) of "
        f"{len({(s.get('patient'), s.get('slice')) for s in slices})} real-CT validation "
        f"slices ({provenance.get('size', 'n/a')}² at {PIXEL_MM:g} mm, "
        f"{provenance.get('views', 'n/a')} views, "
        f"{', '.join(f'{p:g}' for p in photons) or 'n/a'} photons), on which a region's z is "
        f"about N(0, 1); flag thresholds z {thresholds}, from the highest dose to the "
        f"lowest. This study's grid ({config.size}² at {config.pixel_mm:g} mm, "
        f"{config.views} views; the real slice on its own grid), scenes and solvers differ "
        "from that, so its z-scores read with that caveat: a shift shared by every case of "
        "a method may come from the set-up rather than the image.", "",
        "Per family and method: mean score z, cases flagged, failed regions (region RMSE "
        f"above {FAILED_RMSE_HU:g} HU) of the scored ones, and how well the region z finds "
        "the case's own errors: AUROC for the failed regions (mean over the cases with "
        "failed and sound regions, their number in brackets) and Spearman ρ between z and "
        "region RMSE (mean over the cases):", "",
        *_table(["family", "method", "mean score z", "flagged", "failed regions",
                 "AUROC (cases)", "Spearman ρ"], rows), "",
    ]


def _rois(config: StudyConfig, results, methods) -> list[str]:
    """HU accuracy of the inserts and noise in the uniform ROI (scenes with ``rois``)."""
    lines: list[str] = []
    for scene in (s.name for s in config.scenes if s.rois):
        rows = []
        for photons in config.photons:
            for method in methods:
                record = next((r for r in results if (r["scene"], r["photons"], r["method"])
                               == (scene, photons, method)), None)
                if record is None or "inserts" not in record:
                    continue
                errors = [i["measured_hu"] - i["nominal_hu"] for i in record["inserts"].values()]
                rows.append([f"{photons:g}", method, _fmt(record["noise_std_hu"], 1),
                             *(_fmt(e, 1, sign=True) for e in errors),
                             _fmt(max(abs(e) for e in errors), 1)])
        names = [f"{n} ({i['nominal_hu']:g})" for n, i in
                 next(r for r in results if r["scene"] == scene)["inserts"].items()]
        lines += [f"## HU accuracy and noise ({scene})", "",
                  f"![Insert CT numbers]({FIGURES['hu_accuracy']})",
                  f"![Noise vs dose]({FIGURES['noise_vs_dose']})", "",
                  "Measured minus nominal mean CT number in each insert's ROI (eroded by "
                  f"{config.roi_erosion_px} px), HU; noise = std in the uniform water region "
                  "around the centre (HU):", "",
                  *_table(["photons", "method", "noise std", *names, "max abs."], rows), ""]
    return lines


def _psnr_pair(results, **match) -> str:
    """Mean PSNR full / soft-tissue window (dB) of the matching records."""
    return (f"{_fmt(mean_by(results, 'psnr_full_db', **match), 2)} / "
            f"{_fmt(mean_by(results, 'psnr_soft_db', **match), 2)}")


def _gain(results, value: str, family: str, method: str, baseline: str) -> float:
    return mean_by(results, value, family=family, method=method) - \
        mean_by(results, value, family=family, method=baseline)


def _insert_rows(results) -> list[dict]:
    return [{"scene": r["scene"], "photons": r["photons"], "method": r["method"], "insert": name,
             "nominal_hu": i["nominal_hu"], "measured_hu": i["measured_hu"],
             "error_hu": i["measured_hu"] - i["nominal_hu"]}
            for r in results for name, i in r.get("inserts", {}).items()]


def _scene_source(spec) -> str:
    if spec.source == "anatomy":
        return f"random_anatomy(seed={spec.seed}{'' if spec.texture else ', texture=False'})"
    if spec.source == "phantom":
        return f"{spec.phantom} scaled to {spec.fill:g} of the field of view"
    return "pydicom example CT slice"


def _find(records, **match) -> dict:
    return next(r for r in records if all(r[k] == v for k, v in match.items()))


def _stopping(method: MethodSpec) -> str:
    """The method's stopping rule in words (its solver's default ``rtol`` when not set)."""
    if not method.iterative:
        return "—"
    rtol = method.rtol
    if rtol is None:
        rtol = inspect.signature(solver(method.solver)).parameters["rtol"].default
    return f"relative change < {rtol:g}, at most {method.max_iter} iterations"


def _fmt(value: float, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _csv(columns: Sequence[str], rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> None:
    with staged_file(path) as partial:
        partial.write_text(text, encoding="utf-8")
