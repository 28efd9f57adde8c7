"""Decode the stored pixel values of a CT file, compressed or not.

Compressed transfer syntaxes (JPEG lossless, JPEG-LS, JPEG 2000, RLE) are
decoded by pydicom's pixel-data plugins: pylibjpeg with pylibjpeg-libjpeg,
pylibjpeg-openjpeg and pylibjpeg-rle. A syntax without an installed decoder, or
missing, truncated or undecodable data, is a :class:`PixelDataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ctpnp.io.errors import MissingCodecError, PixelDataError
from ctpnp.io.headers import SliceRecord

__all__ = ["decode_frames", "hounsfield"]

_PIXEL_DATA = "PixelData (7FE0,0010)"
_SYNTAX = "TransferSyntaxUID (0002,0010)"


def _transfer_syntax(ds: Dataset, path: Path) -> UID:
    """The file's transfer syntax; for files without meta header, the encoding it was read in."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(syntax)
    implicit, little = ds.original_encoding
    if ds["PixelData"].is_undefined_length:
        raise PixelDataError("encapsulated pixel data but no transfer syntax", path=path,
                             field=_SYNTAX)
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_decoder(syntax: UID, path: Path) -> None:
    name = f"{syntax.name} ({syntax})" if syntax.is_transfer_syntax else f"unknown ({syntax})"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise MissingCodecError(
            f"pixel data is in transfer syntax {name}, for which no decoder exists",
            path=path, field=_SYNTAX,
        ) from exc
    if not decoder.is_available:
        needs = "; ".join(f"{k}: {', '.join(v)}" for k, v in decoder.missing_dependencies.items())
        raise MissingCodecError(
            f"pixel data is in transfer syntax {name}; no decoder plugin is installed ({needs})",
            path=path, field=_SYNTAX,
        )


def decode_frames(ds: Dataset, path: Path) -> np.ndarray:
    """Stored values of all frames, (frames, rows, columns), before rescale.

    ``ds`` must have been read with its pixel data; its in-memory file meta may
    gain a TransferSyntaxUID (files without meta header). The file is never written.
    """
    if "PixelData" not in ds:
        raise PixelDataError("is missing", path=path, field=_PIXEL_DATA)
    syntax = _transfer_syntax(ds, path)
    _check_decoder(syntax, path)
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    try:
        stored = ds.pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # plugins raise many types; pylibjpeg-rle's Rust code panics
        raise PixelDataError(
            f"cannot be decoded ({type(exc).__name__}: {exc})", path=path, field=_PIXEL_DATA
        ) from exc
    frames = int(ds.get("NumberOfFrames") or 1)
    expected = (frames, int(ds.Rows), int(ds.Columns))
    if stored.size != np.prod(expected) or stored.ndim not in (2, 3):
        raise PixelDataError(
            f"decoded to shape {stored.shape}, expected {expected} (one sample per pixel)",
            path=path, field=_PIXEL_DATA,
        )
    return stored.reshape(expected)


def hounsfield(stored: np.ndarray, record: SliceRecord) -> np.ndarray:
    """HU of one frame, (rows, columns) float32: stored * RescaleSlope + RescaleIntercept."""
    return stored.astype(np.float32) * np.float32(record.slope) + np.float32(record.intercept)
