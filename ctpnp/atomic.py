"""Write outputs to a temporary sibling and rename them into place only when complete.

A reader of the output path thus sees either nothing or the finished result,
never a half-written series, and an interrupted write leaves no partial output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["staged_dir", "staged_file"]


@contextlib.contextmanager
def staged_dir(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success rename it to ``final``.

    Raises:
        FileExistsError: if ``final`` exists and is not an empty folder (never
            overwritten), before the work or, when another writer got there first,
            after it (the temporary folder is then removed, ``final`` left as is).
    """
    final = Path(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final}: output folder exists and is not empty")
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial",
                                      dir=final.parent))
    try:
        yield temporary
        temporary.chmod(0o755)
        try:
            if final.exists():
                final.rmdir()
            temporary.rename(final)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise FileExistsError(f"{final}: another writer filled the output folder "
                                  "meanwhile") from err
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (same suffixes); on success replace ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".partial-", suffix=f"-{final.name}",
                                    dir=final.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o644)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
