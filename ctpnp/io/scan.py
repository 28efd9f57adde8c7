"""Walk a folder, recognise DICOM files and keep the slice records of CT images.

Files are recognised by content, never by name: the 128-byte preamble and
``DICM`` marker, or, for files written without preamble, a first tag in group
0002 or 0008. Anything else is skipped as "not DICOM". DICOMDIR files, non-CT
objects and localizers (scout views) are skipped and counted; a file that looks
like DICOM but cannot be parsed is an error, never silently dropped. A CT file
whose geometry or rescale tags are missing is kept aside with its error, which
is raised if its series is the one read.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ctpnp.io.enhanced import enhanced_records
from ctpnp.io.errors import DicomInputError, MissingTagError, UnreadableFileError
from ctpnp.io.headers import SliceRecord, classic_record, optional_text

__all__ = ["ScanResult", "is_dicom_file", "read_dataset", "scan_folder"]

CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.1")
LEGACY_ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.2")
MEDIA_DIRECTORY = UID("1.2.840.10008.1.3.10")
_FIRST_GROUPS = {b"\x02\x00", b"\x08\x00", b"\x00\x08"}  # LE 0002, LE 0008, BE 0008


@dataclass
class ScanResult:
    """CT slice records found in a folder and counts of what was skipped, by reason.

    ``invalid`` holds, for CT files whose headers cannot give a slice record,
    their SeriesInstanceUID (``""`` if unreadable) and the error.
    """

    records: list[SliceRecord] = field(default_factory=list)
    invalid: list[tuple[str, MissingTagError]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    files_seen: int = 0

    def skipped_text(self) -> str:
        """``"3 not DICOM, 1 localizer"`` style summary."""
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts like a DICOM file (with or without preamble)."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM" or head[:2] in _FIRST_GROUPS


def read_dataset(path: Path, *, pixels: bool) -> Dataset:
    """Parse a DICOM file; any parse failure becomes :class:`UnreadableFileError`."""
    try:
        return pydicom.dcmread(path, force=True, stop_before_pixels=not pixels)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise UnreadableFileError(
            f"cannot be parsed as DICOM ({type(exc).__name__}: {exc})", path=path
        ) from exc


def _classify(ds: Dataset, path: Path, result: ScanResult) -> None:
    """Add the file's CT slice records to ``result`` or count why it is skipped."""
    sop_class = optional_text(ds, "SOPClassUID")
    meta = getattr(ds, "file_meta", None) or Dataset()
    if MEDIA_DIRECTORY in (sop_class, optional_text(meta, "MediaStorageSOPClassUID")) or (
        "DirectoryRecordSequence" in ds
    ):
        result.skipped["DICOMDIR"] += 1
    elif not sop_class and not optional_text(ds, "Modality"):
        raise UnreadableFileError(
            "no SOPClassUID (0008,0016) or Modality (0008,0060): truncated or not a DICOM object",
            path=path,
        )
    elif sop_class in (ENHANCED_CT, LEGACY_ENHANCED_CT):
        _add(result, ds, path, enhanced=True)
    elif sop_class == CT_IMAGE or (not sop_class and optional_text(ds, "Modality") == "CT"):
        if "LOCALIZER" in optional_text(ds, "ImageType").upper():
            result.skipped["localizer"] += 1
        else:
            _add(result, ds, path, enhanced=False)
    else:
        result.skipped["not a CT image"] += 1


def _add(result: ScanResult, ds: Dataset, path: Path, *, enhanced: bool) -> None:
    """Add a CT file's records, or set it aside as invalid with its error."""
    try:
        if enhanced:
            records, localizers = enhanced_records(ds, path)
            if localizers:
                result.skipped["localizer frame"] += localizers
        else:
            records = [classic_record(ds, path)]
    except MissingTagError as error:
        result.invalid.append((optional_text(ds, "SeriesInstanceUID"), error))
        return
    result.records.extend(records)


def list_files(folder: Path) -> list[Path]:
    """Regular files under ``folder``, recursively, in a stable order; links not followed."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found.extend(Path(root, n) for n in sorted(names) if Path(root, n).is_file())
    return found


def scan_folder(folder: Path | str) -> ScanResult:
    """CT slice records of every file under ``folder`` (recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomInputError("is not a folder", path=folder)
    result = ScanResult()
    for path in list_files(folder):
        result.files_seen += 1
        if not is_dicom_file(path):
            result.skipped["not DICOM"] += 1
            continue
        ds = read_dataset(path, pixels=False)
        try:
            _classify(ds, path, result)
        except DicomInputError:
            raise
        except Exception as exc:  # lazy decoding of a damaged header inside pydicom
            raise UnreadableFileError(
                f"header cannot be interpreted ({type(exc).__name__}: {exc})", path=path
            ) from exc
    return result
