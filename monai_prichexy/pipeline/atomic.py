"""Atomic output files: a temp file in the destination folder, fsync, ``os.replace``.

A reader (or a resumed run) sees either the complete previous file or the complete new one,
never a truncated file, whenever the process is killed. Temp files are named
``.<final name>.<random>.tmp`` -- the pattern the DICOM writer uses too -- so that a resumed
run can find and remove the ones a killed run left behind (:func:`remove_stale_temp_files`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "fsync_dir", "is_temp_name", "remove_stale_temp_files", "umask_mode"]

_TEMP_RE = re.compile(r"^\..+\.tmp$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` looks like one of our (or the DICOM writer's) temp files."""
    return bool(_TEMP_RE.match(name))


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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temp file beside ``path``, fsync it, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
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


def remove_stale_temp_files(root: str | os.PathLike, skip: Iterator[str] | tuple[str, ...] = ()) -> int:
    """Delete temp files (see :func:`is_temp_name`) anywhere under ``root``; returns how many."""
    removed = 0
    skip = set(skip)
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            if is_temp_name(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
