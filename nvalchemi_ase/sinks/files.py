"""Output files written whole or not at all, and the parts a killed writer leaves behind.

Every file a run rewrites (checkpoints, ``run.json``, ``progress.json``, a
trajectory cut back on resume or committed by a Dask chunk) is written to a
hidden file beside it, synced, then renamed over it: a reader, or a run killed
at any moment, sees the old file or the new one, never part of one. A kill
between the write and the rename leaves the hidden part (``.NAME.PID.tmp``);
:func:`remove_parts` clears them when the run is resumed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["remove_parts", "replacing"]


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield the hidden path to write ``path``'s new contents to; renamed over ``path`` when the block ends.

    The new file is synced before the rename and the rename itself after it
    (where the file system allows). If the block raises, the part is removed and
    ``path`` is left as it was.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        _sync(temporary, os.O_RDONLY)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not every file system syncs a directory
        _sync(path.parent, os.O_RDONLY)


def remove_parts(folder: Path) -> None:
    """Delete the hidden part-written files (``.NAME.PID.tmp``) that a killed writer left in ``folder``."""
    for part in folder.glob(".*.tmp"):
        part.unlink(missing_ok=True)


def _sync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
