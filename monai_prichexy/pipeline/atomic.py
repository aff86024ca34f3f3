"""Atomic output files (:mod:`monai_prichexy.atomic`) and the clean-up of a killed run's temp files.

A reader (or a resumed run) sees either the complete previous file or the complete new one,
never a truncated file, whenever the process is killed. Temp files are named
``.<final name>.<random>.tmp`` -- the pattern the DICOM writer uses too -- so that a resumed
run can find and remove the ones a killed run left behind (:func:`remove_stale_temp_files`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ..atomic import atomic_write, atomic_write_bytes, fsync_dir, umask_mode

__all__ = ["atomic_write", "atomic_write_bytes", "fsync_dir", "is_temp_name", "remove_stale_temp_files", "umask_mode"]

_TEMP_RE = re.compile(r"^\..+\.tmp$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` looks like one of our (or the DICOM writer's) temp files."""
    return bool(_TEMP_RE.match(name))


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
