"""The leak scan's inflation (tests/leak_scan.py): PHI hidden in a compressed container is found,
where a raw byte search is blind; an unopenable container fails instead of passing silently."""

from __future__ import annotations

import gzip
import io
import struct
import warnings

import numpy as np
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from tests.dicom_fixtures import PATIENT_FAMILY, PIXEL_MARKERS, make_radiograph_dataset
from tests.leak_scan import UnscannableError, layers, scan

NEEDLE = PATIENT_FAMILY.encode()


def _deflated_dicom(**kw) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_radiograph_dataset(16, 16, transfer_syntax=DeflatedExplicitVRLittleEndian, **kw)
        bio = io.BytesIO()
        ds.save_as(bio, enforce_file_format=True)
    return bio.getvalue()


def test_gzip_is_inflated():
    data = gzip.compress(b"header " + NEEDLE + b" rest", mtime=0)
    assert NEEDLE not in data
    assert scan({"f": data}, [NEEDLE]) == [f"{NEEDLE!r} in f (gzip)"]


def test_deflated_dicom_dataset_is_inflated_and_its_meta_parsed():
    data = _deflated_dicom()
    assert NEEDLE not in data and b"1.2.840.10008.1.2.1.99" in data[:400]
    hits = scan({"f": data}, [NEEDLE, PIXEL_MARKERS[0]])
    assert f"{NEEDLE!r} in f (deflated DICOM dataset)" in hits
    assert f"{PIXEL_MARKERS[0]!r} in f (deflated DICOM dataset)" in hits  # nested icon pixels are searched
    # the same header written Explicit VR LE is found raw, and not inflated again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_radiograph_dataset(16, 16)
        bio = io.BytesIO()
        ds.save_as(bio, enforce_file_format=True)
    assert [label for label, _ in layers(bio.getvalue())] == ["raw"]


def test_the_image_pixel_data_of_a_deflated_dataset_is_left_out():
    """Deformed 8-bit pixels spell short words by chance; the image's own Pixel Data is not searched."""
    pixels = np.frombuffer(b"sssssssPIXELWORD" * 16, dtype=np.uint8).reshape(16, 16)
    data = _deflated_dicom(bits_stored=8, phi=False, pixels=pixels)
    (label, body), = layers(data)[1:]
    assert label == "deflated DICOM dataset" and b"PIXELWORD" not in body and b"MONOCHROME2" in body


def test_compressed_png_text_chunks_are_inflated():
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient " + PATIENT_FAMILY, zip=True)
    info.add_itxt("Author", "Dr. " + PATIENT_FAMILY + "-itxt", zip=True)
    bio = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(bio, format="PNG", pnginfo=info)
    data = bio.getvalue()
    assert NEEDLE not in data
    hits = scan({"png": data}, [NEEDLE, NEEDLE + b"-itxt"])
    assert hits.count(f"{NEEDLE!r} in png (PNG compressed text)") == 2
    assert f"{NEEDLE + b'-itxt'!r} in png (PNG compressed text)" in hits


def test_an_unopenable_container_fails_loudly():
    with pytest.raises(UnscannableError, match="gzip"):
        layers(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"not deflate data at all")
    data = bytearray(_deflated_dicom())
    (group_length,) = struct.unpack_from("<I", data, 140)  # (0002,0000) UL, the file meta's length
    meta_end = 144 + group_length
    data[meta_end:] = b"\xff" * (len(data) - meta_end)  # the deflate stream destroyed
    with pytest.raises(UnscannableError, match="deflated DICOM dataset cannot be inflated"):
        layers(bytes(data))
