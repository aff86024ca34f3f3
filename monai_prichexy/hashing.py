"""SHA-256 of files and streams, and the keyed HMAC-SHA256 behind every pseudonym.

The one place where the package hashes: checksums of weights and outputs
(:func:`sha256_file`, :func:`sha256_stream`, :func:`sha256_bytes`) and the keyed digest (:func:`hmac_sha256`) from
which file-name pseudonyms, output-tree names, remapped UIDs, patient pseudonyms and date
offsets are derived. Standard library only, so light modules (the CLI's argument checks,
``transforms.meta``, ``dicom``) may import it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import BinaryIO

__all__ = ["CHUNK_BYTES", "sha256_bytes", "sha256_stream", "sha256_file", "hmac_sha256"]

CHUNK_BYTES = 1 << 20
"""Files are hashed in chunks of 1 MiB."""


def sha256_stream(handle: BinaryIO, chunk: int = CHUNK_BYTES) -> str:
    """Hex SHA-256 of an open binary file, read in chunks from its current position."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(chunk), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes already in memory (a file read once, then parsed from the same bytes)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256(key, message), 32 bytes."""
    return hmac.new(key, message, hashlib.sha256).digest()
