"""Lazy, loop-safe walk of an input tree.

Folders are listed one at a time (sorted, so runs are reproducible) and files are yielded as
they are found: nothing proportional to the number of files is held except the set of
folders already visited, which is what detects a directory loop. Symbolic links are
followed, but a folder is entered at most once (a link back to an ancestor, or two links to
the same folder, are reported instead of walked again). Hidden files and folders (names
starting with ``.``, e.g. ``.DS_Store``, AppleDouble ``._x`` files, ``.git``) are reported as
ignored. Nothing is opened here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["WalkEntry", "walk_files", "is_inside"]


@dataclass(frozen=True)
class WalkEntry:
    """One item found by :func:`walk_files`.

    Attributes:
        path: the path under the root, as walked (symbolic links not resolved).
        rel: ``path`` relative to the root (POSIX).
        kind: ``"file"`` (a regular file to process), ``"ignored"`` (hidden) or ``"problem"``.
        reason: why an ``"ignored"`` / ``"problem"`` entry is not processed.
    """

    path: Path
    rel: PurePosixPath
    kind: str = "file"
    reason: str | None = None


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, both with links resolved (neither needs to exist)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _dev_ino(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def walk_files(root: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> Iterator[WalkEntry]:
    """Yield the entries under ``root`` depth first, sorted by name within each folder.

    Args:
        root: the input folder.
        exclude: folders never to enter (e.g. the output folder, reached through a link).
    """
    root = Path(root)
    visited: set[tuple[int, int]] = {_dev_ino(root.stat())}
    excluded = set()
    for path in exclude:
        try:
            excluded.add(_dev_ino(os.stat(path)))
        except OSError:
            pass
    stack: list[tuple[Path, PurePosixPath]] = [(root, PurePosixPath())]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            yield WalkEntry(folder, rel_folder, "problem", f"folder cannot be listed ({err.strerror or err})")
            continue
        subfolders: list[tuple[Path, PurePosixPath]] = []
        for entry in entries:
            path, rel = Path(entry.path), rel_folder / entry.name
            if entry.name.startswith("."):
                yield WalkEntry(path, rel, "ignored", "hidden file or folder")
                continue
            try:
                st = os.stat(path)  # follows links
            except FileNotFoundError:
                yield WalkEntry(path, rel, "problem", "broken symbolic link" if entry.is_symlink() else "vanished")
                continue
            except OSError as err:
                yield WalkEntry(path, rel, "problem", f"cannot stat ({err.strerror or err})")
                continue
            if stat.S_ISDIR(st.st_mode):
                ident = _dev_ino(st)
                if ident in excluded:
                    continue
                if ident in visited:
                    yield WalkEntry(path, rel, "problem", "directory loop or folder reached twice through a link (not walked again)")
                    continue
                visited.add(ident)
                subfolders.append((path, rel))
            elif stat.S_ISREG(st.st_mode):
                yield WalkEntry(path, rel)
            else:
                yield WalkEntry(path, rel, "problem", "not a regular file (device, FIFO or socket)")
        stack.extend(reversed(subfolders))
