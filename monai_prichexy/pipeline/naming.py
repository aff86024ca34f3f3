"""Keyed pseudonyms for the names in the output tree.

File *and* folder names of radiograph archives often carry patient ids, names or dates
(``Doe_John_1961/20230517/IM0001``), so nothing of an input name is kept: every folder and
every file of the output tree is named by an HMAC-SHA256 of its path relative to the input
root, under the de-identification key. The same key and input tree always give the same
output tree (a resumed or repeated run overwrites instead of duplicating), and without the key
a name cannot be traced back or even confirmed by guessing.

The content digest recorded in the manifest is keyed too: an unkeyed SHA-256 of the input
bytes would let anyone who holds a patient's original file check whether it is in a release.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

from ..dicom import DeidKey

__all__ = ["Pseudonymizer", "FILE_ID_LENGTH", "DIR_NAME_LENGTH"]

FILE_ID_LENGTH = 20  # hex digits: 80 bits
DIR_NAME_LENGTH = 16  # hex digits: 64 bits


def _encode(rel: PurePosixPath) -> bytes:
    return os.fsencode(str(rel))  # undecodable bytes of a file name survive (surrogateescape)


class Pseudonymizer:
    """Names of the output tree, derived from relative input paths with a :class:`DeidKey`."""

    def __init__(self, key: DeidKey) -> None:
        if not isinstance(key, DeidKey):
            raise TypeError(f"key must be a DeidKey, got {type(key).__name__}")
        self.key = key

    def file_id(self, rel: PurePosixPath) -> str:
        """The pseudonym of a file: its output stem and its id in the manifest."""
        return self.key.digest(b"prichexy-file\x00" + _encode(rel)).hex()[:FILE_ID_LENGTH]

    def dir_name(self, rel_dir: PurePosixPath) -> str:
        """The pseudonym of a folder (keyed on its whole relative path, not only its name)."""
        return self.key.digest(b"prichexy-dir\x00" + _encode(rel_dir)).hex()[:DIR_NAME_LENGTH]

    def output_relpath(self, rel: PurePosixPath, suffix: str) -> PurePosixPath:
        """Output path (relative to OUT) of the input file ``rel``, with the format's ``suffix``."""
        parents = list(rel.parents)[:-1][::-1]  # a, a/b, ... without "."
        parts = [self.dir_name(p) for p in parents]
        parts.append(self.file_id(rel) + suffix)
        return PurePosixPath(*parts)

    def content_digest(self, sha256_hex: str) -> str:
        """Keyed digest of the input bytes (HMAC of their SHA-256)."""
        return self.key.digest(b"prichexy-content\x00" + bytes.fromhex(sha256_hex)).hex()
