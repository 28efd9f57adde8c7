"""Real CT from package registries: fetched into a cache, split by patient, read as HU.

Six patients (:data:`SOURCES`): two chests from the pyradiomics 3.1.0 sdist
(PyPI), a head from the Debian package invesalius-examples, an abdomen crop
from the liver-ct-segmentation-package 1.6.0 wheel (PyPI), and two head
slices among the installed pydicom's test files. :func:`fetch` downloads them
with pip / apt-get, checks each download's pinned sha256 and writes one
``(z, y, x)`` HU volume per patient into the cache (``$CTPNP_DATA``, default
``~/.cache/ctpnp/data``; see :mod:`ctpnp.data.cache`); :func:`list_sources` and
:func:`cached` say what is there and under which licence; :func:`load_patient`
reads a :class:`Volume` and :func:`slices_hu` yields the 2-D slices of a split
(:data:`SPLITS`: no patient in two sets). :func:`tissue_statistics` measures
per-tissue texture (HU fluctuation, correlation length in mm).

Orientation: volumes are ``(z, y, x)``, ``z`` feet to head, each slice in
display orientation (rows anterior to posterior, columns the patient's right
to left). The NRRD files store axes ``x, y, z``: an axial slice is
``a[:, :, k].T``. Units: HU, mm.

Nothing here prints or draws; progress goes through a callback. pydicom is
used only through :mod:`ctpnp.io`, imported when a DICOM source is read.
"""

from ctpnp.data.cache import Volume, cache_folder, cached, load_patient
from ctpnp.data.errors import DataFormatError, DataSourceError
from ctpnp.data.fetch import AIR_HU, Progress, fetch, list_sources
from ctpnp.data.slices import patient_slices_hu, slices_hu
from ctpnp.data.sources import SOURCES, SPLITS, Archive, Source
from ctpnp.data.texture import TISSUE_HU, tissue_statistics

__all__ = [
    "AIR_HU",
    "SOURCES",
    "SPLITS",
    "TISSUE_HU",
    "Archive",
    "DataFormatError",
    "DataSourceError",
    "Progress",
    "Source",
    "Volume",
    "cache_folder",
    "cached",
    "fetch",
    "list_sources",
    "load_patient",
    "patient_slices_hu",
    "slices_hu",
    "tissue_statistics",
]
