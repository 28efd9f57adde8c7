"""Errors of the real-CT corpus: a source that cannot be fetched, a file that cannot be read.

Every message names the source (or patient) and the file, so a user knows what
failed and where to look.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataFormatError", "DataSourceError"]


class DataSourceError(RuntimeError):
    """A source that cannot be fetched or used: no network, a changed file, not in the cache.

    Args:
        source: the source or patient concerned, e.g. ``"pyradiomics-3.1.0"``.
        problem: what is wrong, in words.
        path: the file concerned, if any.
    """

    def __init__(self, source: str, problem: str, *, path: Path | str | None = None):
        self.source = source
        self.path = None if path is None else Path(path)
        where = source if self.path is None else f"{source}: {self.path}"
        super().__init__(f"{where}: {problem}")


class DataFormatError(ValueError):
    """A volume file (NRRD, InVesalius project, MRC) whose content cannot be read.

    Args:
        path: the file.
        field: the header field or member at fault, e.g. ``"sizes"`` or ``"matrix.dat"``.
        problem: what is wrong, in words.
    """

    def __init__(self, path: Path | str, field: str, problem: str):
        self.path = Path(path)
        self.field = field
        super().__init__(f"{self.path}: {field}: {problem}")
