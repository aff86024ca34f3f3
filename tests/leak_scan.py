"""Byte-level PHI scan that also looks inside compressed containers.

A raw byte search is blind to anything stored compressed: a ``.nii.gz`` (gzip), a DICOM file
in Deflated Explicit VR Little Endian (the whole dataset after the file meta is a raw deflate
stream), and PNG ``zTXt`` / compressed ``iTXt`` text chunks. :func:`layers` returns a file's
bytes plus every such inflated layer (recursively), :func:`scan` searches all of them.
Encapsulated pixel data (RLE, JPEG, JPEG 2000) and PNG ``IDAT`` hold pixels only and are not
inflated: what matters there is the header, which stays uncompressed. For the same reason the
image's own Pixel Data element (the last element of the inflated DICOM dataset) is left out
of the inflated layer: deformed 8-bit pixels spell short needles by chance (``sssssss``),
whereas nested pixel data (icon images) and overlays stay in and are searched.

The parsers here are written from the file-format specifications (RFC 1952, DICOM PS3.10
7.1 / PS3.5 A.5, PNG 11.3.3), independently of the code under test. A container that claims
to be compressed but cannot be inflated is an error, never silently skipped.
"""

from __future__ import annotations

import gzip
import struct
import zlib

__all__ = ["DEFLATED_TS", "layers", "scan", "dicom_deflated_dataset", "png_text_chunks"]

DEFLATED_TS = b"1.2.840.10008.1.2.1.99"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class UnscannableError(AssertionError):
    """A compressed container that the scan cannot open (so it could hide PHI)."""


def dicom_deflated_dataset(data: bytes) -> bytes | None:
    """The inflated dataset of a Part 10 file in Deflated Explicit VR LE, else ``None``.

    The file meta (group 0002) is always Explicit VR Little Endian and uncompressed
    (PS3.10 7.1); everything after it is a raw deflate stream (PS3.5 A.5).
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    pos, ts = 132, None
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            start = pos + 8
        if element == 0x0010:
            ts = data[start : start + length].rstrip(b"\x00 ")
        pos = start + length
    if ts != DEFLATED_TS:
        return None
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        body = inflater.decompress(data[pos:]) + inflater.flush()
    except zlib.error as err:
        raise UnscannableError(f"deflated DICOM dataset cannot be inflated: {err}") from None
    if not body:
        raise UnscannableError("deflated DICOM dataset is empty")
    return _without_final_pixel_data(body)


def _without_final_pixel_data(body: bytes) -> bytes:
    """``body`` (Explicit VR LE) without its top-level Pixel Data, the element that ends it."""
    for vr in (b"OB", b"OW"):
        start = body.rfind(b"\xe0\x7f\x10\x00" + vr + b"\x00\x00")
        while start >= 0:
            (length,) = struct.unpack_from("<I", body, start + 8)
            if start + 12 + length == len(body):
                return body[:start]
            start = body.rfind(b"\xe0\x7f\x10\x00" + vr + b"\x00\x00", 0, start)
    return body


def png_text_chunks(data: bytes) -> list[bytes]:
    """Inflated payloads of the compressed text chunks (``zTXt``, compressed ``iTXt``) of a PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return []
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"zTXt":
                keyword, _, rest = payload.partition(b"\x00")
                out.append(keyword + b"\x00" + zlib.decompress(rest[1:]))
            elif kind == b"iTXt":
                keyword, _, rest = payload.partition(b"\x00")
                if rest[:1] == b"\x01":  # compression flag
                    _lang, _, rest2 = rest[2:].partition(b"\x00")
                    _translated, _, text = rest2.partition(b"\x00")
                    out.append(keyword + b"\x00" + zlib.decompress(text))
        except zlib.error as err:
            raise UnscannableError(f"PNG {kind.decode()} chunk cannot be inflated: {err}") from None
        if kind == b"IEND":
            break
    return out


def layers(data: bytes, depth: int = 0) -> list[tuple[str, bytes]]:
    """``[("raw", data), ("gzip", ...), ("deflated DICOM dataset", ...), ...]`` (recursive)."""
    found: list[tuple[str, bytes]] = [("raw", data)]
    if depth > 3:
        return found
    inner: list[tuple[str, bytes]] = []
    if data[:2] == b"\x1f\x8b":
        try:
            inner.append(("gzip", gzip.decompress(data)))
        except (OSError, EOFError, zlib.error) as err:
            raise UnscannableError(f"gzip stream cannot be inflated: {err}") from None
    body = dicom_deflated_dataset(data)
    if body is not None:
        inner.append(("deflated DICOM dataset", body))
    inner.extend(("PNG compressed text", chunk) for chunk in png_text_chunks(data))
    for label, blob in inner:
        found.extend((f"{label}/{sub}" if sub != "raw" else label, b) for sub, b in layers(blob, depth + 1))
    return found


def scan(blobs: dict[str, bytes], needles: list[bytes]) -> list[str]:
    """``"needle in where (layer)"`` for every needle found in any layer of any blob (case-insensitive)."""
    leaks = []
    lowered = [n.lower() for n in needles]
    for where, data in blobs.items():
        for layer, blob in layers(data):
            low = blob.lower()
            for needle, low_needle in zip(needles, lowered):
                if low_needle in low:
                    leaks.append(f"{needle!r} in {where}" + ("" if layer == "raw" else f" ({layer})"))
    return leaks
