"""Versions of Python and the packages ctpnp runs on, for ``ctpnp info`` and reports."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["PACKAGES", "package_versions"]

PACKAGES = ("ctpnp", "torch", "numpy", "odl", "astra-toolbox", "pydicom", "nibabel")
"""The distributions whose versions decide a result."""


def package_versions() -> dict[str, str]:
    """``{"python": "3.11.x", package: version or "not installed", ...}`` for :data:`PACKAGES`."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
