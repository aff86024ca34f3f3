"""Atomic files: a temp file in the destination folder, fsync, optional check, ``os.replace``.

A reader (or a resumed run) sees either the complete previous file or the complete new one,
never a truncated one, whenever the process is killed. Temp files are named
``.<final name>.<random>.tmp`` so that a resumed run can find and remove the ones a killed
run left behind. Used by every writer of the project: DICOM and image outputs, checkpoints,
manifests and JSON records.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "fsync_dir", "umask_mode"]


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once at import, while single-threaded (umask is per process)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def umask_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give (``mkstemp`` always uses 0600)."""
    return 0o666 & ~_UMASK


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that a rename in it is durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], None], verify: Callable[[Path], None] | None = None
) -> Path:
    """Call ``write(handle)`` on a temp file beside ``path``, fsync it, ``verify(temp_path)``, move it into place.

    On any exception (from ``write``, ``verify``, fsync or the rename) the temp file is removed,
    an existing ``path`` is left untouched, and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` by ``data``."""
    return atomic_write(path, lambda handle: handle.write(data))
