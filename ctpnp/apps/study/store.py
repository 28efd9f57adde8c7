"""Finished cases on disk: ``cases/<id>.json`` (record) and ``cases/<id>.npy`` (image and maps).

The images are written first and the record last, both atomically
(:func:`ctpnp.atomic.staged_file`), so a record on disk means a finished
case. A record whose ``key`` differs from the current configuration's is stale
and is recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ctpnp.atomic import staged_file

__all__ = ["json_key", "load_arrays", "load_record", "save_case"]


def json_key(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def load_record(cases_dir: Path, case_id: str, key: Any) -> dict | None:
    """The stored record of ``case_id`` if it was computed with ``key``, else ``None``."""
    path = cases_dir / f"{case_id}.json"
    if not path.is_file() or not (cases_dir / f"{case_id}.npy").is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("key") == json_key(key) else None


def load_arrays(cases_dir: Path, case_id: str) -> np.ndarray:
    """``(3, H, W)`` float32 of a case: image (HU), log-prior map (nats/pixel) and
    implausibility (z of each region on its pixels; NaN outside the body, for a
    diverged image and for a reference)."""
    return np.load(cases_dir / f"{case_id}.npy")


def save_case(cases_dir: Path, record: dict, image_hu: np.ndarray, log_prior_map: np.ndarray,
              implausibility_z: np.ndarray) -> None:
    """Store a finished case: its three ``(H, W)`` arrays (see :func:`load_arrays`), then
    the record."""
    arrays = np.stack([image_hu, log_prior_map, implausibility_z]).astype(np.float32)
    with staged_file(cases_dir / f"{record['id']}.npy") as partial, partial.open("wb") as stream:
        np.save(stream, arrays)
    with staged_file(cases_dir / f"{record['id']}.json") as partial:
        partial.write_text(json.dumps(record, indent=1), encoding="utf-8")

