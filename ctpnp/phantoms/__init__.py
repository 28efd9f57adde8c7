"""Analytic CT phantoms: definitions as data, exact line integrals, anti-aliased rasters.

* :func:`load` reads a shipped definition (``"shepp_logan"``, ``"shepp_logan_3d"``,
  ``"forbild"``, ``"water_inserts"``, ``"resolution"``) or a YAML file;
* :func:`random_anatomy` draws a seeded abdominal slice for training and validation,
  with tissue textures (Gaussian lumps with exact line integrals,
  :mod:`ctpnp.phantoms.texture`) unless ``texture=False``;
* :class:`Phantom` gives ``.rasterize(geometry)`` (HU image), ``.project(geometry)``
  (exact sinogram) and ``.line_integrals(starts_mm, directions)`` (any rays);
* :class:`HelicalScan` / :func:`cylindrical_detector_rays` build the rays of a
  helical cone-beam scan.

Frames: phantoms are written with ``y`` up and ``x`` to the right of the
displayed image; :mod:`ctpnp.phantoms.frame` maps them to the image frame of
:mod:`ctpnp.scanner.geometry`.
"""

from ctpnp.phantoms.anatomy import random_anatomy
from ctpnp.phantoms.definitions import available, from_mapping, load
from ctpnp.phantoms.helical import HelicalScan, cylindrical_detector_rays
from ctpnp.phantoms.phantom import Phantom

__all__ = [
    "HelicalScan",
    "Phantom",
    "available",
    "cylindrical_detector_rays",
    "from_mapping",
    "load",
    "random_anatomy",
]
