"""The study's configuration: a YAML file checked into frozen dataclasses.

Layout (see ``default.yaml``)::

    grid: {size: 128, pixel_mm: 0.8, views: 360}   # phantoms' reconstruction grid
    photons: [5.0e3, 2.0e4, 1.0e5]                 # incident photons per reading
    noise_seed: 0
    log_prior: {prior: lpn, max_iter: 50}           # the map computed on every image
    implausibility: prox                            # its shipped quality calibration
    roi_erosion_px: 2
    scenes:
      - {name: anatomy_7001, source: anatomy, seed: 7001}
      - {name: shepp_logan, source: phantom, phantom: shepp_logan, fill: 0.9}
      - {name: water_inserts, source: phantom, phantom: water_inserts, rois: true}
      - {name: pydicom_ct, source: pydicom_ct}
    methods:
      - {name: FBP, solver: fbp}
      - {name: TV, solver: tv, max_iter: 3000, rtol: 1.0e-5}
      - {name: PnP-ADMM LPN, solver: pnp-admm, prior: lpn, max_iter: 200, equivariant: false}

Every problem raises :class:`StudyConfigError` naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ctpnp.phantoms import available as available_phantoms
from ctpnp.priors.registry import fingerprint
from ctpnp.quality import calibration_path, load_calibration
from ctpnp.registry import METHODS, PNP_METHODS, PRIORS

__all__ = [
    "DEFAULT_CONFIG",
    "SCENE_SOURCES",
    "MethodSpec",
    "SceneSpec",
    "StudyConfig",
    "StudyConfigError",
    "load_config",
]

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
"""The configuration shipped with the package."""

SCENE_SOURCES = ("anatomy", "phantom", "pydicom_ct")
"""``anatomy``: :func:`ctpnp.phantoms.random_anatomy` (the priors' training family);
``phantom``: a shipped analytic definition scaled into the field of view;
``pydicom_ct``: the CT slice shipped with pydicom (a real image)."""

LOG_PRIOR_CHOICES = ("lpn", "prox", "gmm")
"""Priors that offer ``log_prior_map``."""

DEFAULT_IMPLAUSIBILITY = "gmm"
"""The prior whose quality calibration scores the reconstructions when the file names none."""


class StudyConfigError(ValueError):
    """A malformed study configuration; the message names the file and the field."""


@dataclass(frozen=True)
class SceneSpec:
    """One object to scan.

    Attributes:
        name: identifier used in file names and tables.
        source: one of :data:`SCENE_SOURCES`.
        seed: random-anatomy seed (``anatomy`` only).
        phantom: shipped phantom name (``phantom`` only).
        fill: fraction of the field of view the phantom's outline spans (``phantom``).
        rois: measure insert CT numbers and noise (every shape but the first
            is an insert; the uniform region around the centre is the noise ROI).
        texture: tissue textures in the random anatomy (``anatomy`` only; ``false``
            gives the flat, piecewise-constant phantom).
    """

    name: str
    source: str
    seed: int | None = None
    phantom: str | None = None
    fill: float = 0.9
    rois: bool = False
    texture: bool = True

    @property
    def family(self) -> str:
        """``in-family``, ``out-of-family`` or ``real CT`` relative to the priors' training."""
        return {"anatomy": "in-family", "phantom": "out-of-family",
                "pydicom_ct": "real CT"}[self.source]


@dataclass(frozen=True)
class MethodSpec:
    """One reconstruction method.

    Attributes:
        name: label in tables and figures.
        solver: a method of :data:`ctpnp.registry.METHODS` (``pnp-admm``, ``tv``, ...).
        prior: prior name for the PnP solvers (:func:`ctpnp.priors.load`).
        max_iter: iteration cap (iterative methods): a method stops earlier by its
            convergence rule, the relative change ``||x_k+1 - x_k|| / ||x_k+1||``
            falling below ``rtol`` (:class:`ctpnp.solvers.StoppingRule`).
        rtol: that rule's threshold; ``None``: the solver's own default.
        equivariant: apply the prior under random flips/rotations (PnP only).
    """

    name: str
    solver: str
    prior: str | None = None
    max_iter: int = 20
    rtol: float | None = None
    equivariant: bool = False

    @property
    def iterative(self) -> bool:
        return self.solver != "fbp"

    @property
    def slug(self) -> str:
        """File-name-safe form of :attr:`name`."""
        return "".join(c if c.isalnum() else "_" for c in self.name.lower()).strip("_")


@dataclass(frozen=True)
class StudyConfig:
    """The whole study.

    Attributes:
        size: phantom grid ``size × size`` pixels; pixel_mm: its pixel (mm).
            The pydicom slice keeps its own grid.
        views: projections over a full turn of the clinical fan beam.
        photons: dose levels, incident photons per detector reading.
        noise_seed: base seed of the Poisson noise.
        log_prior: prior whose ``log_prior_map`` is computed on every image.
        log_prior_max_iter: iterations of the LPN's inversion (ignored by other priors).
        implausibility: prior whose shipped quality calibration
            (:func:`ctpnp.quality.load_calibration`) scores every reconstruction.
        roi_erosion_px: pixels removed from the edge of every measurement ROI.
        scenes, methods: what is scanned and how it is reconstructed.
        source: the file the configuration came from.
    """

    size: int
    pixel_mm: float
    views: int
    photons: tuple[float, ...]
    noise_seed: int
    log_prior: str
    log_prior_max_iter: int
    implausibility: str
    roi_erosion_px: int
    scenes: tuple[SceneSpec, ...]
    methods: tuple[MethodSpec, ...]
    source: str = "<mapping>"


def load_config(path: Path | str | None = None) -> StudyConfig:
    """Read and check a study configuration (default: :data:`DEFAULT_CONFIG`).

    Raises:
        StudyConfigError: unreadable YAML or a bad field, naming the file and field.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StudyConfigError(f"{path}: cannot read the study configuration: "
                               f"{error.strerror}") from None
    except yaml.YAMLError as error:
        raise StudyConfigError(f"{path}: not valid YAML: {error}") from None
    return config_from_mapping(data, str(path))


def config_from_mapping(data: Any, source: str = "<mapping>") -> StudyConfig:
    """Check a parsed configuration (the layout of the module docstring)."""
    fields = _Fields(data, source, "")
    grid = fields.mapping("grid")
    photons = fields.get("photons")
    if not isinstance(photons, list) or not photons:
        fields.fail("photons", "must be a non-empty list of photon counts")
    log_prior = fields.mapping("log_prior")
    config = StudyConfig(
        size=grid.integer("size", minimum=16),
        pixel_mm=grid.number("pixel_mm"),
        views=grid.integer("views", minimum=2),
        photons=tuple(fields.number_at("photons", i, v) for i, v in enumerate(photons)),
        noise_seed=fields.integer("noise_seed", minimum=0, default=0),
        log_prior=log_prior.choice("prior", LOG_PRIOR_CHOICES),
        log_prior_max_iter=log_prior.integer("max_iter", minimum=1, default=50),
        implausibility=_implausibility(fields),
        roi_erosion_px=fields.integer("roi_erosion_px", minimum=0, default=2),
        scenes=tuple(_scene(item) for item in fields.items("scenes")),
        methods=tuple(_method(item) for item in fields.items("methods")),
        source=source,
    )
    fields.no_extra({"grid", "photons", "noise_seed", "log_prior", "implausibility",
                     "roi_erosion_px", "scenes", "methods"})
    for kind, names in (("scenes", [s.name for s in config.scenes]),
                        ("methods", [m.name for m in config.methods])):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            fields.fail(kind, f"duplicate names {duplicates}")
    slugs = [m.slug for m in config.methods]
    if len(set(slugs)) != len(slugs):
        fields.fail("methods", f"names must differ in letters or digits, got {slugs}")
    return config


def _implausibility(fields: _Fields) -> str:
    """The ``implausibility`` prior: one with a shipped calibration that fits its weights."""
    calibrated = [name for name in sorted(PRIORS) if calibration_path(name).is_file()]
    name = fields.choice("implausibility", calibrated, default=DEFAULT_IMPLAUSIBILITY)
    try:
        load_calibration(name, fingerprint(name))
    except ValueError as error:
        fields.fail("implausibility", f"has no usable calibration: {error}")
    return name


def _scene(fields: _Fields) -> SceneSpec:
    source = fields.choice("source", SCENE_SOURCES)
    allowed = {"name", "source", "rois"} | {"anatomy": {"seed", "texture"},
                                            "phantom": {"phantom", "fill"},
                                            "pydicom_ct": set()}[source]
    fields.no_extra(allowed)
    fill = fields.number("fill", default=0.9) if source == "phantom" else 0.9
    if not 0 < fill <= 1:
        fields.fail("fill", f"must lie in (0, 1], got {fill}")
    return SceneSpec(
        name=fields.name(),
        source=source,
        seed=fields.integer("seed", minimum=0) if source == "anatomy" else None,
        phantom=fields.choice("phantom", available_phantoms()) if source == "phantom" else None,
        fill=fill,
        rois=fields.boolean("rois", default=False),
        texture=fields.boolean("texture", default=True),
    )


def _method(fields: _Fields) -> MethodSpec:
    solver = fields.choice("solver", list(METHODS))
    allowed = {"name", "solver"} | ({"max_iter", "rtol"} if solver != "fbp" else set()) \
        | ({"prior", "equivariant"} if solver in PNP_METHODS else set())
    fields.no_extra(allowed)
    return MethodSpec(
        name=fields.name(),
        solver=solver,
        prior=fields.choice("prior", sorted(PRIORS)) if solver in PNP_METHODS else None,
        max_iter=fields.integer("max_iter", minimum=1, default=20),
        rtol=fields.number("rtol") if "rtol" in fields.data else None,
        equivariant=fields.boolean("equivariant", default=False),
    )


class _Fields:
    """Typed access to one mapping of the file, with errors naming ``source: path.field``."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        self.source, self.path = source, path
        if not isinstance(data, Mapping):
            where = f"field {path!r}" if path else "the top level"
            raise StudyConfigError(f"{source}: {where} must be a mapping, got {data!r}")
        self.data = data

    def fail(self, key: str, message: str) -> None:
        raise StudyConfigError(f"{self.source}: field '{self.path}{key}' {message}")

    def get(self, key: str, default: Any = None, required: bool = True) -> Any:
        if key not in self.data:
            if default is None and required:
                self.fail(key, "is missing")
            return default
        return self.data[key]

    def mapping(self, key: str) -> _Fields:
        return _Fields(self.get(key), self.source, f"{self.path}{key}.")

    def items(self, key: str) -> list[_Fields]:
        value = self.get(key)
        if not isinstance(value, list) or not value:
            self.fail(key, "must be a non-empty list")
        return [_Fields(item, self.source, f"{self.path}{key}[{i}].")
                for i, item in enumerate(value)]

    def number(self, key: str, default: float | None = None) -> float:
        return self.positive(key, self.get(key, default))

    def number_at(self, key: str, index: int, value: Any) -> float:
        return self.positive(f"{key}[{index}]", value)

    def positive(self, label: str, value: Any) -> float:
        if isinstance(value, str):  # PyYAML reads 5.0e3 (no exponent sign) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 < value < float("inf"):
            self.fail(label, f"must be a positive finite number, got {value!r}")
        return float(value)

    def integer(self, key: str, minimum: int, default: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"must be an integer ≥ {minimum}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...] | list[str],
               default: str | None = None) -> str:
        value = self.get(key, default)
        if value not in choices:
            self.fail(key, f"must be one of {list(choices)}, got {value!r}")
        return value

    def name(self) -> str:
        value = self.get("name")
        if not isinstance(value, str) or not value.strip():
            self.fail("name", f"must be a non-empty string, got {value!r}")
        return value

    def no_extra(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            self.fail(unknown[0], f"is not a known field here (allowed: {sorted(allowed)})")
