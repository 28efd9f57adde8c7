"""The real-CT corpus as data: where each patient comes from, its licence, and the split.

Six patients from four registry packages (no data hub). Each :class:`Source`
is one patient: the :class:`Archive` that holds it (registry, package,
version, the download's pinned sha256), the member inside, its format, and
how to turn the stored array into ``(z, y, x)`` HU in display orientation:
slice ``hu[k]`` axial, rows running anterior to posterior, columns from the
patient's right to left (as a radiologist views it), ``k`` from feet to head.

How the sha256 were obtained: pyradiomics' and the liver wheel's are the
digests PyPI lists on https://pypi.org/simple/<package>/ (each checked
against ``sha256sum`` of a ``pip download``); invesalius-examples' is the
``SHA256`` of ``apt-cache show invesalius-examples=3.1.99998-4`` (Debian
bookworm's Packages index, checked the same way); the pydicom test files'
were computed with ``sha256sum`` on the files pydicom 3.0.2 installs.

:data:`SPLITS` splits by patient: no patient is in two sets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHIVES", "SOURCES", "SPLITS", "Archive", "Source"]

PYPI_FILES = "https://files.pythonhosted.org/packages"


@dataclass(frozen=True)
class Archive:
    """One downloadable file of a registry that holds one or more patients.

    Attributes:
        name: short id, e.g. ``"pyradiomics-3.1.0"``.
        client: how it is fetched: ``"pip"`` (``pip download --no-deps`` of
            ``requirement``), ``"apt"`` (``apt-get download`` of ``requirement``) or
            ``"pydicom"`` (the file ``filename`` among the installed pydicom's test files).
        requirement: what the client is asked for (a pip direct reference, ``package=version``).
        filename: the file the client delivers.
        sha256: its pinned digest (hex).
        registry, package, version: where it is published.
        licence: the package's licence as its registry states it, with caveats.
        origin: a web address of the package.
    """

    name: str
    client: str
    requirement: str
    filename: str
    sha256: str
    registry: str
    package: str
    version: str
    licence: str
    origin: str


@dataclass(frozen=True)
class Source:
    """One patient of the corpus.

    Attributes:
        patient: the patient's id in this corpus, e.g. ``"lung1"``.
        anatomy: what the volume shows.
        archive: the downloaded file that holds it.
        member: its path inside the archive (for ``"pydicom"`` the file itself).
        file_format: ``"nrrd"``, ``"inv3"``, ``"mrc"`` or ``"dicom"``.
        pixel_mm: in-plane pixel size in mm (read from the file; checked against this).
        slice_mm: slice spacing in mm (a single slice: its thickness).
        voxel_assumed: True when the file stores no voxel size and ``pixel_mm`` and
            ``slice_mm`` are this table's assumption (see ``note``).
        transpose: axes of the stored array (:mod:`ctpnp.data.formats` order) that
            become ``(z, y, x)``.
        flip_rows: flip ``y`` after the transpose (rows stored bottom-up).
        note: provenance and caveats.
    """

    patient: str
    anatomy: str
    archive: Archive
    member: str
    file_format: str
    pixel_mm: float
    slice_mm: float
    voxel_assumed: bool = False
    transpose: tuple[int, int, int] = (0, 1, 2)
    flip_rows: bool = False
    note: str = ""


PYRADIOMICS = Archive(
    name="pyradiomics-3.1.0",
    client="pip",
    # A direct reference to the sdist: `pip download pyradiomics==3.1.0` refuses it
    # because the file's own metadata says 3.0.1a1.
    requirement=f"pyradiomics @ {PYPI_FILES}/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece"
                "35448ab6b4578f2/pyradiomics-3.1.0.tar.gz",
    filename="pyradiomics-3.1.0.tar.gz",
    sha256="24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
    registry="PyPI", package="pyradiomics", version="3.1.0",
    licence="BSD-3-Clause (package; the test images carry no separate licence)",
    origin="https://pypi.org/project/pyradiomics/3.1.0/",
)

INVESALIUS = Archive(
    name="invesalius-examples-3.1.99998-4",
    client="apt",
    requirement="invesalius-examples=3.1.99998-4",
    filename="invesalius-examples_3.1.99998-4_all.deb",
    sha256="f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97",
    registry="Debian (bookworm main)", package="invesalius-examples", version="3.1.99998-4",
    licence="GPL-2 (debian/copyright, Files: *)",
    origin="https://packages.debian.org/bookworm/invesalius-examples",
)

LIVER = Archive(
    name="liver-ct-segmentation-package-1.6.0",
    client="pip",
    requirement=f"liver-ct-segmentation-package @ {PYPI_FILES}/3f/e5/704b7605f24a7cd14fc90b0356ff"
                "b45116945bd5d1bebaf298e5934df124/liver_ct_segmentation_package-1.6.0-py2.py3-none"
                "-any.whl",
    filename="liver_ct_segmentation_package-1.6.0-py2.py3-none-any.whl",
    sha256="67ffa526d8500ce5e3d9f2c96c1690543d811d352d93d531301d35791b9d6bba",
    registry="PyPI", package="liver-ct-segmentation-package", version="1.6.0",
    licence="MIT (package; the volume is derived from the LiTS challenge data)",
    origin="https://pypi.org/project/liver-ct-segmentation-package/1.6.0/",
)


def _pydicom_file(filename: str, sha256: str, licence: str) -> Archive:
    return Archive(
        name=f"pydicom:{filename}", client="pydicom", requirement=filename, filename=filename,
        sha256=sha256, registry="PyPI (installed dependency)", package="pydicom",
        version="3.0.2", licence=licence, origin="https://github.com/pydicom/pydicom",
    )


HEAD_HITACHI = _pydicom_file(
    "J2K_pixelrep_mismatch.dcm",
    "2df92c523d36639e4d88f892f47e4f6616c48ab017a445a6241ffe38b2d07bbf",
    "MIT (pydicom; test file of pydicom issue 1149)",
)
HEAD_GE = _pydicom_file(
    "693_J2KI.dcm",
    "8d5d503fd46b9a59c628762d71d7391ea1a2a5fd8d339ac82ef9e281a15ef65f",
    "MIT (pydicom; test file of pydicom issue 693). Its PatientID CQ500-CT-310 suggests the"
    " CQ500 head CT collection, whose own terms are CC BY-NC-SA 4.0: research use only",
)

ARCHIVES: dict[str, Archive] = {
    a.name: a for a in (PYRADIOMICS, INVESALIUS, LIVER, HEAD_HITACHI, HEAD_GE)
}
"""Every downloadable file of the corpus, by :attr:`Archive.name`."""

SOURCES: dict[str, Source] = {s.patient: s for s in (
    Source("lung1", "chest CT, tumour in the lung", PYRADIOMICS,
           "pyradiomics-3.1.0/data/lung1_image.nrrd", "nrrd", 0.5703125, 5.0,
           note="512x512x48, int16 HU; NRRD axes x, y, z (LPS): an axial slice is a[:, :, k].T"),
    Source("lung2", "chest CT, tumour in the lung", PYRADIOMICS,
           "pyradiomics-3.1.0/data/lung2_image.nrrd", "nrrd", 0.6269531, 5.0,
           note="512x512x61, int16 HU; NRRD axes x, y, z (LPS): an axial slice is a[:, :, k].T"),
    Source("cranium", "head, mandible to vertex (head holder visible)", INVESALIUS,
           "usr/share/doc/invesalius-examples/examples/Cranium.inv3", "inv3", 0.9570312, 1.5,
           flip_rows=True,
           note="'ProMED CT 0051', 108x256x256 int16 HU; InVesalius stores rows bottom-up"
                " (posterior at the top), flipped here"),
    Source("liver", "abdomen, contrast-enhanced liver with lesions (crop)", LIVER,
           "liver_ct_segmentation_package/data/img_117.mrc", "mrc", 1.5, 1.5,
           voxel_assumed=True, transpose=(2, 1, 0),
           note="128^3 float32 HU, resampled, no voxel size stored. Assumed isotropic 1.5 mm,"
                " estimated from anatomy: the enhanced aorta is 13 px across (20-25 mm: 1.6-1.9"
                " mm), the vertebral body 36 x 20 px (about 42 x 30 mm: 1.2-1.5 mm), and the 128"
                " slices span kidney to heart base. Stored (nz, ny, nx) with axial slices"
                " a[:, :, k].T, like the NRRD files"),
    Source("head_hitachi", "head, one axial slice (Hitachi Supria, 120 kVp)", HEAD_HITACHI,
           "J2K_pixelrep_mismatch.dcm", "dicom", 0.431, 5.0,
           note="512x512, J2K lossless; -2000 HU outside the field of view"),
    Source("head_ge", "head, one axial slice (GE, 140 kVp)", HEAD_GE,
           "693_J2KI.dcm", "dicom", 0.478516, 5.0,
           note="512x512, lossy J2K (ratio about 338); -3024 HU outside the field of view"),
)}
"""Every patient of the corpus, by id. ``CT_small.dcm`` (the demo's slice) is not among them."""

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("lung1", "cranium", "liver"),
    "validation": ("lung2", "head_hitachi", "head_ge"),
}
"""Patients of each set, split by patient: a whole chest (lung2) and two head slices are
kept for validation; no patient is in two sets."""
