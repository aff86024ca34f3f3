"""Builders of hostile and broken inputs for the reliability tests.

Every :class:`BadKind` makes one kind of bad input inside a folder and says how the
library and the batch CLI must react:

* ``call``: how the library is exercised: ``"file"`` (one file through the per-file
  anonymizer, the format detected as the batch does, or ``fmt`` when given), ``"reader"``
  (:func:`read_radiograph` only), ``"walk"`` (the tree walker) plus ``"reader"``,
  ``"array"`` (:class:`DeformAnonymize` on an in-memory array) or ``"inout"``
  (:func:`check_in_out` of the batch);
* ``reason``: a regular expression the error message must match;
* ``cli``: what the batch must record for the file: ``"failed"`` / ``"skipped"`` (manifest
  record and the listing on stderr), ``"problem"`` (found by the walker: listed on stderr
  as skipped), ``"none"`` (nothing to do, e.g. an empty folder named ``x.dcm``) or
  ``"accepted"``;
* ``cli_reason``: the regular expression for the manifest / stderr reason (default ``reason``).

:data:`ACCEPTED_KINDS` are odd but valid inputs that must be anonymized. Pydicom's own test
files are used where they are available offline (:func:`pydicom_file`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    RLELossless,
)

from tests.dicom_fixtures import as_radiograph, make_radiograph_dataset, save, synthetic_chest

__all__ = [
    "BadKind",
    "BAD_KINDS",
    "ACCEPTED_KINDS",
    "STATE_DIR",
    "IS_ROOT",
    "pydicom_file",
    "dicom_bytes",
    "png_bytes",
    "digest_tree",
    "output_files",
    "temp_files",
    "tiny_checkpoint",
    "tiny_network",
    "file_anonymizer",
    "anonymize_one",
    "memory_cap",
]

STATE_DIR = ".prichexy"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROWS, COLS = 32, 40


# --------------------------------------------------------------------------- helpers


def pydicom_file(name: str) -> Path | None:
    """Path of one of pydicom's bundled test files, or None (never downloads)."""
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file(name, download=False)
    except Exception:
        return None
    return Path(path) if path and Path(path).is_file() else None


def _small_ds(**kw) -> Dataset:
    kw.setdefault("phi", False)
    return make_radiograph_dataset(kw.pop("rows", ROWS), kw.pop("cols", COLS), **kw)


def dicom_bytes(ds: Dataset, **save_kw) -> bytes:
    bio = io.BytesIO()
    if save_kw:
        ds.save_as(bio, **save_kw)
    else:
        ds.save_as(bio, enforce_file_format=True)
    return bio.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _save_ds(ds: Dataset, path: Path, **save_kw) -> Path:
    return _write(path, dicom_bytes(ds, **save_kw))


def _gray(rows: int = ROWS, cols: int = COLS, bits: int = 8) -> np.ndarray:
    arr = synthetic_chest(rows, cols, bits_stored=bits)
    return arr.astype(np.uint8 if bits <= 8 else np.uint16)


def png_bytes(arr: np.ndarray, **save_kw) -> bytes:
    from PIL import Image

    bio = io.BytesIO()
    Image.fromarray(arr).save(bio, format="PNG", **save_kw)
    return bio.getvalue()


def _pil_bytes(img, fmt: str, **save_kw) -> bytes:
    bio = io.BytesIO()
    img.save(bio, format=fmt, **save_kw)
    return bio.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _png_declared(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` 8-bit gray pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _nifti_bytes(arr: np.ndarray, two: bool = False) -> bytes:
    import nibabel as nib

    cls = nib.Nifti2Image if two else nib.Nifti1Image
    return cls(arr, np.eye(4)).to_bytes()


def _nifti_declared(shape: tuple[int, ...]) -> bytes:
    """A NIfTI-2 header declaring ``shape`` (uint8) followed by 64 bytes of data."""
    import nibabel as nib

    raw = _nifti_bytes(np.zeros((4, 4), np.uint8), two=True)
    header = nib.Nifti2Header.from_fileobj(io.BytesIO(raw))
    header.set_data_shape(shape)
    block = header.binaryblock
    offset = int(header["vox_offset"])
    return block + b"\x00" * (offset - len(block)) + b"\x00" * 64


# ------------------------------------------------------------------ DICOM builders


def _dcm_good(path: Path, **kw) -> Path:
    return _save_ds(_small_ds(**kw), path)


def _dcm_truncated(fraction: float) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        data = dicom_bytes(_small_ds())
        return _write(path, data[: int(len(data) * fraction)])

    return build


def _dcm_truncated_in_pixels(path: Path) -> Path:
    data = dicom_bytes(_small_ds(bits_stored=12))
    return _write(path, data[:-700])


def _dcm_no_pixels(path: Path) -> Path:
    ds = _small_ds()
    del ds.PixelData
    return _save_ds(ds, path)


def _dcm_colour(photometric: str) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=8)
        ds.PhotometricInterpretation = photometric
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.PixelData = np.repeat(_gray()[..., None], 3, axis=-1).tobytes()
        return _save_ds(ds, path)

    return build


def _dcm_palette(path: Path) -> Path:
    ds = _small_ds(bits_stored=8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    return _save_ds(ds, path)


def _dcm_multiframe(path: Path) -> Path:
    ds = _small_ds(bits_stored=12)
    frames = np.stack([synthetic_chest(ROWS, COLS, 12, seed=s) for s in range(3)]).astype("<u2")
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    return _save_ds(ds, path)


def _dcm_one_bit(path: Path) -> Path:
    ds = _small_ds(bits_stored=8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = np.packbits(_gray() > 128, bitorder="little").tobytes()
    for kw in ("WindowCenter", "WindowWidth"):
        delattr(ds, kw)
    return _save_ds(ds, path)


def _dcm_32bit(path: Path) -> Path:
    ds = _small_ds(bits_stored=12)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = _gray(bits=12).astype("<u4").tobytes()
    return _save_ds(ds, path)


def _dcm_float(path: Path) -> Path:
    ds = _small_ds(bits_stored=12)
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.add_new(0x7FE00008, "OF", np.random.default_rng(0).random((ROWS, COLS), dtype=np.float32).tobytes())
    return _save_ds(ds, path)


def _dcm_pixel_length(factor: float) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=12)
        data = bytes(ds.PixelData)
        n = int(len(data) * factor) // 2 * 2
        ds.PixelData = (data * 2)[:n]
        return _save_ds(ds, path)

    return build


def _dcm_declared_size(rows: int, cols: int, payload: int = 256) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=12)
        ds.Rows, ds.Columns = rows, cols
        ds.PixelData = bytes(payload)
        return _save_ds(ds, path)

    return build


def _dcm_encapsulated(ts: str, fragment: bytes, bits: int = 8) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=bits)
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = encapsulate([fragment])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        return _save_ds(ds, path, implicit_vr=False, little_endian=True, enforce_file_format=True)

    return build


def _dcm_without(keyword: str) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=12)
        delattr(ds, keyword)
        return _save_ds(ds, path)

    return build


def _dcm_set(**values) -> Callable[[Path], Path]:
    bits = values.pop("_bits", 12)

    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=bits)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return _save_ds(ds, path)

    return build


def _dcm_raw_truncated(path: Path) -> Path:
    tmp = path.with_name(path.name + ".full")
    save(_small_ds(bits_stored=12), tmp, raw=True)
    data = tmp.read_bytes()
    tmp.unlink()
    return _write(path, data[: len(data) // 2])


def _dcm_burned_in(path: Path) -> Path:
    return _save_ds(_small_ds(burned_in="YES"), path)


def _dcm_pydicom(name: str) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        src = pydicom_file(name)
        if src is None:  # pragma: no cover - pydicom always bundles these
            import pytest

            pytest.skip(f"pydicom test file {name} not available offline")
        return _write(path, src.read_bytes())

    return build


def _dcm_pydicom_as_dx(name: str) -> Callable[[Path], Path]:
    """A pydicom sample (CT, MR, SC, ...) rewritten as a DX radiograph (Modality and SOP class only)."""

    def build(path: Path) -> Path:
        src = _dcm_pydicom(name)(path)
        return as_radiograph(src, path)

    return build


#: SOP classes of the non-radiograph modalities of the corpus
_SOP_OF = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
}


def _dcm_modality(modality: str, sop: str | None = None) -> Callable[[Path], Path]:
    """A small valid grayscale dataset of another modality (Modality and SOP class edited)."""

    def build(path: Path) -> Path:
        ds = _small_ds(bits_stored=12)
        ds.Modality = modality
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _SOP_OF[sop or modality]
        return _save_ds(ds, path)

    return build


# ---------------------------------------------------------------- other formats


def _png_truncated(path: Path) -> Path:
    data = png_bytes(_gray(64, 64))
    return _write(path, data[: len(data) // 2])


def _png_garbage_after_magic(path: Path) -> Path:
    return _write(path, b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(600))


def _garbage(path: Path) -> Path:
    return _write(path, b"%PDF?" + np.random.default_rng(2).bytes(2000))


def _text(path: Path) -> Path:
    return _write(path, b"this is not a radiograph, only a text file with a .dcm name\n" * 20)


def _empty(path: Path) -> Path:
    return _write(path, b"")


def _png_mode(mode: str) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        from PIL import Image

        gray = _gray()
        if mode == "RGB":
            rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1).astype(np.uint8)
            img = Image.fromarray(rgb, mode="RGB")
        elif mode == "1":
            img = Image.fromarray(gray).convert("1")
        elif mode == "LA":
            alpha = np.full_like(gray, 255)
            alpha[:4] = 0
            img = Image.fromarray(np.stack([gray, alpha], axis=-1), mode="LA")
        else:  # pragma: no cover
            raise ValueError(mode)
        return _write(path, _pil_bytes(img, "PNG"))

    return build


def _png_tiny(path: Path) -> Path:
    return _write(path, png_bytes(np.array([[7]], dtype=np.uint8)))


def _png_animated(path: Path) -> Path:
    from PIL import Image

    frames = [Image.fromarray(_gray()), Image.fromarray(255 - _gray())]
    return _write(path, _pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]))


def _tiff_float(value: float) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        from PIL import Image

        arr = np.random.default_rng(3).random((ROWS, COLS), dtype=np.float32)
        arr[5, 7] = value
        return _write(path, _pil_bytes(Image.fromarray(arr, mode="F"), "TIFF"))

    return build


def _tiff_multipage(path: Path) -> Path:
    from PIL import Image

    frames = [Image.fromarray(_gray()), Image.fromarray(255 - _gray())]
    return _write(path, _pil_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:]))


def _tiff_truncated(path: Path) -> Path:
    from PIL import Image

    data = _pil_bytes(Image.fromarray(_gray(64, 64)), "TIFF")
    return _write(path, data[: len(data) // 3])


def _tiff_declared(path: Path) -> Path:
    """A little-endian TIFF whose IFD declares 40000 x 40000 8-bit pixels in one tiny strip."""
    entries = [
        (256, 4, 1, 40000),  # ImageWidth LONG
        (257, 4, 1, 40000),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression none
        (262, 3, 1, 1),  # Photometric BlackIsZero
        (273, 4, 1, 8 + 2 + 9 * 12 + 4),  # StripOffsets (right after the IFD)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, 40000),  # RowsPerStrip
        (279, 4, 1, 64),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    return _write(path, b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(64))


def _nifti_float(value: float) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        arr = np.random.default_rng(4).random((COLS, ROWS), dtype=np.float32)
        arr[3, 9] = value
        return _write(path, _nifti_bytes(arr))

    return build


def _nifti_volume(path: Path) -> Path:
    return _write(path, _nifti_bytes(np.zeros((16, 16, 3), np.int16)))


def _nifti_truncated(path: Path) -> Path:
    data = _nifti_bytes(np.ones((64, 64), np.int16))
    return _write(path, data[: 352 + 100])


def _nifti_huge(path: Path) -> Path:
    """NIfTI-1 (dims are int16): 32767 x 32767 declared, 64 bytes of data."""
    import nibabel as nib

    header = nib.Nifti1Header.from_fileobj(io.BytesIO(_nifti_bytes(np.zeros((4, 4), np.uint8))))
    header.set_data_shape((32767, 32767))
    block = header.binaryblock
    return _write(path, block + b"\x00" * (int(header["vox_offset"]) - len(block)) + b"\x00" * 64)


def _nifti_gz_huge(path: Path) -> Path:
    return _write(path, gzip.compress(_nifti_declared((40000, 40000)), mtime=0))


def _nifti_gz_corrupt(path: Path) -> Path:
    data = gzip.compress(_nifti_bytes(np.ones((32, 32), np.int16)), mtime=0)
    return _write(path, data[:40] + bytes(b ^ 0x5A for b in data[40:120]) + data[120:])


def _jpeg_truncated(path: Path) -> Path:
    from PIL import Image

    data = _pil_bytes(Image.fromarray(_gray(64, 64)), "JPEG", quality=90)
    return _write(path, data[: int(len(data) * 0.6)])


# ----------------------------------------------------------- file system oddities


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _dangling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.parent / "this_target_does_not_exist.dcm", path)
    return path


def _dir_loop(path: Path) -> Path:
    """``path`` is a folder holding a link back to its parent (the input root)."""
    path.mkdir(parents=True, exist_ok=True)
    os.symlink("..", path / "back_to_root")
    return path / "back_to_root"


def _unreadable(path: Path) -> Path:
    """chmod 000 -- or, as root (where chmod does not block reads), a link to itself (ELOOP)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        os.symlink(path.name, path)
        return path
    _dcm_good(path)
    os.chmod(path, 0)
    return path


def _directory_named_dcm(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


UNREADABLE_REASON = "cannot stat|Too many levels|file not found" if IS_ROOT else "permission denied|Permission denied"


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class BadKind:
    name: str
    filename: str
    build: Callable[[Path], Path]
    reason: str
    call: str = "file"
    fmt: str | None = None
    cli: str = "failed"
    cli_reason: str | None = None
    walk_reason: str | None = None
    big: bool = False
    array: Callable[[], object] | None = None

    @property
    def expected_cli_reason(self) -> str:
        if self.cli_reason:
            return self.cli_reason
        return self.walk_reason if self.cli == "problem" and self.walk_reason else self.reason


_NOT_DICOM = r"not a DICOM file"
_DECODE = r"pixel data could not be decoded"

BAD_KINDS: list[BadKind] = [
    # ---- DICOM made here
    BadKind("dcm_zero_byte", "empty.dcm", _empty, _NOT_DICOM),
    BadKind("dcm_truncated_header", "cut_header.dcm", _dcm_truncated(0.12), r"truncated|corrupt|not a DICOM file"),
    BadKind("dcm_truncated_pixels", "cut_pixels.dcm", _dcm_truncated_in_pixels, r"file is truncated \(value of \(7FE0,0010\) cut short\)"),
    BadKind("dcm_text_named_dcm", "notes.dcm", _text, _NOT_DICOM),
    BadKind("dcm_random_garbage", "garbage.dcm", _garbage, _NOT_DICOM),
    BadKind("dcm_raw_truncated", "raw_cut.dcm", _dcm_raw_truncated, _NOT_DICOM),
    BadKind("dcm_no_pixel_data", "no_pixels.dcm", _dcm_no_pixels, r"no PixelData element"),
    BadKind("dcm_rgb", "rgb.dcm", _dcm_colour("RGB"), r"photometric interpretation RGB is not grayscale"),
    BadKind("dcm_ybr_full", "ybr.dcm", _dcm_colour("YBR_FULL"), r"photometric interpretation YBR_FULL is not grayscale"),
    BadKind("dcm_palette", "palette.dcm", _dcm_palette, r"PALETTE COLOR is not grayscale"),
    BadKind("dcm_samples_per_pixel_3", "spp3.dcm", _dcm_set(SamplesPerPixel=3), r"SamplesPerPixel is 3, need 1"),
    BadKind("dcm_multi_frame", "frames.dcm", _dcm_multiframe, r"NumberOfFrames is 3; only single-frame"),
    BadKind("dcm_1bit", "bits1.dcm", _dcm_one_bit, r"1-bit \(binary\) pixel data"),
    BadKind("dcm_32bit", "bits32.dcm", _dcm_32bit, r"BitsAllocated = 32 is not supported"),
    BadKind("dcm_float_pixels", "float.dcm", _dcm_float, r"float pixel data"),
    BadKind("dcm_bits_stored_gt_allocated", "bs.dcm", _dcm_set(_bits=8, BitsStored=16, HighBit=15), r"BitsStored = 16 is not in 8\.\.BitsAllocated \(8\)"),
    BadKind("dcm_wrong_high_bit", "hb.dcm", _dcm_set(HighBit=15), r"HighBit = 15 is not BitsStored - 1 = 11"),
    BadKind("dcm_missing_bits_allocated", "noba.dcm", _dcm_without("BitsAllocated"), r"missing mandatory attribute BitsAllocated"),
    BadKind("dcm_pixels_shorter_than_rows_x_cols", "short.dcm", _dcm_pixel_length(0.5), r"pixel data has 1280 bytes, less than Rows\*Columns"),
    BadKind("dcm_pixels_longer_than_rows_x_cols", "long.dcm", _dcm_pixel_length(2.0), r"more than Rows\*Columns.*undeclared frames"),
    BadKind("dcm_1x1", "one.dcm", _dcm_declared_size(1, 1, 2), r"Rows = 1 is outside the accepted range"),
    BadKind("dcm_40000x40000_declared", "huge.dcm", _dcm_declared_size(40000, 40000), r"Rows = 40000 is outside the accepted range", big=True),
    BadKind("dcm_corrupt_jpeg_baseline", "jpeg.dcm", _dcm_encapsulated("1.2.840.10008.1.2.4.50", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2), _DECODE),
    BadKind("dcm_corrupt_jpeg2000_lossless", "j2k.dcm", _dcm_encapsulated("1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51" + bytes(300)), _DECODE),
    BadKind("dcm_unsupported_mpeg2", "mpeg.dcm", _dcm_encapsulated("1.2.840.10008.1.2.4.100", bytes(512)), _DECODE + r".*MPEG2"),
    BadKind("dcm_unknown_private_transfer_syntax", "private_ts.dcm", _dcm_encapsulated("1.2.826.0.1.3680043.9.9999.1", bytes(512)), _DECODE),
    BadKind(
        "dcm_burned_in_annotation",
        "burned.dcm",
        _dcm_burned_in,
        r"BurnedInAnnotation is YES",
    ),
    # ---- pydicom's bundled test files
    BadKind("pydicom_MR_truncated", "MR_truncated.dcm", _dcm_pydicom("MR_truncated.dcm"), r"file is truncated"),
    BadKind("pydicom_rtplan_no_pixels", "rtplan.dcm", _dcm_pydicom("rtplan.dcm"), r"no PixelData element"),
    BadKind("pydicom_rtplan_truncated", "rtplan_truncated.dcm", _dcm_pydicom("rtplan_truncated.dcm"), r"file is truncated"),
    BadKind("pydicom_SC_rgb", "SC_rgb.dcm", _dcm_pydicom("SC_rgb_small_odd.dcm"), r"RGB is not grayscale"),
    BadKind("pydicom_SC_ybr_full_422", "SC_ybr.dcm", _dcm_pydicom("SC_ybr_full_422_uncompressed.dcm"), r"YBR_FULL_422 is not grayscale"),
    BadKind("pydicom_rgb_jpeg", "SC_rgb_jpeg.dcm", _dcm_pydicom("SC_rgb_jpeg_dcmtk.dcm"), r"YBR_FULL is not grayscale"),
    BadKind("pydicom_palette", "palette_pd.dcm", _dcm_pydicom("examples_palette.dcm"), r"PALETTE COLOR"),
    BadKind("pydicom_rtdose_multiframe", "rtdose.dcm", _dcm_pydicom("rtdose.dcm"), r"NumberOfFrames is 15"),
    BadKind("pydicom_rtdose_32bit", "rtdose_1frame.dcm", _dcm_pydicom("rtdose_1frame.dcm"), r"BitsAllocated = 32"),
    BadKind("pydicom_liver_1bit", "liver_1frame.dcm", _dcm_pydicom("liver_1frame.dcm"), r"1-bit"),
    BadKind("pydicom_MR_padded_length", "MR_padded.dcm", _dcm_pydicom("MR_small_padded.dcm"), r"more than Rows\*Columns"),
    BadKind("pydicom_badVR", "badVR.dcm", _dcm_pydicom("badVR.dcm"), r"invalid value for NumberOfFrames"),
    BadKind("pydicom_waveform_ecg", "ecg.dcm", _dcm_pydicom("waveform_ecg.dcm"), r"no PixelData element"),
    BadKind("pydicom_no_meta_truncated", "no_meta.dcm", _dcm_pydicom("no_meta.dcm"), _NOT_DICOM),
    BadKind("pydicom_meta_missing_tsyntax", "missing_ts.dcm", _dcm_pydicom("meta_missing_tsyntax.dcm"), r"missing mandatory attribute Rows"),
    # ---- out of scope: readable images that are not projection radiographs
    *[
        BadKind(f"dcm_modality_{m.lower()}", f"{m.lower()}.dcm", _dcm_modality(m),
                rf"modality {m} is not a projection radiograph \(accepted: CR, DX, DR\)")
        for m in ("CT", "MR", "US", "NM", "PT", "MG")
    ],
    BadKind("dcm_dx_with_ct_sop_class", "dx_ct.dcm", _dcm_modality("DX", "CT"),
            r"SOP class CT Image Storage \(1\.2\.840\.10008\.5\.1\.4\.1\.1\.2\) is not a projection radiograph"),
    BadKind("dcm_secondary_capture", "sc.dcm", _dcm_modality("OT", "SC"),
            r"Secondary Capture Image Storage \(SOP class 1\.2\.840\.10008\.5\.1\.4\.1\.1\.7\) is refused unless "
            r"Secondary Capture is explicitly allowed \(--allow-secondary-capture\)"),
    BadKind("pydicom_CT_small", "CT_small.dcm", _dcm_pydicom("CT_small.dcm"), r"modality CT is not a projection radiograph"),
    BadKind("pydicom_MR_small", "MR_small.dcm", _dcm_pydicom("MR_small.dcm"), r"modality MR is not a projection radiograph"),
    BadKind("pydicom_JPEG2000_NM_secondary_capture", "j2k.dcm", _dcm_pydicom("JPEG2000.dcm"),
            r"modality NM is not a projection radiograph"),
    # ---- PNG / JPEG / TIFF / NIfTI
    BadKind("png_truncated", "cut.png", _png_truncated, r"cannot decode PNG"),
    BadKind("png_garbage_after_signature", "garbage_sig.png", _png_garbage_after_magic, r"cannot decode PNG"),
    BadKind("png_garbage_no_signature", "garbage.png", _garbage, r"cannot decode PNG", fmt="png", cli="skipped", cli_reason=r"not a supported image"),
    BadKind("png_zero_byte", "empty.png", _empty, r"cannot decode PNG", fmt="png", cli="skipped", cli_reason=r"not a supported image"),
    BadKind("png_rgb_colour", "colour.png", _png_mode("RGB"), r"colour image \(RGB\) is not a grayscale radiograph"),
    BadKind("png_1bit", "binary.png", _png_mode("1"), r"1-bit \(binary\) image"),
    BadKind("png_transparency", "alpha.png", _png_mode("LA"), r"LA image with transparency"),
    BadKind("png_1x1", "one.png", _png_tiny, r"too small"),
    BadKind("png_animated", "anim.png", _png_animated, r"animated image with 2 frames"),
    BadKind("png_40000x40000_declared", "huge.png", lambda p: _write(p, _png_declared(40000, 40000)), r"DecompressionBomb|too large", big=True),
    BadKind("jpeg_truncated", "cut.jpg", _jpeg_truncated, r"cannot decode JPEG"),
    BadKind("tiff_float_nan", "nan.tif", _tiff_float(float("nan")), r"NaN or infinite"),
    BadKind("tiff_float_inf", "inf.tif", _tiff_float(float("inf")), r"NaN or infinite"),
    BadKind("tiff_multipage", "pages.tif", _tiff_multipage, r"multi-page TIFF with 2 frames"),
    BadKind("tiff_truncated", "cut.tif", _tiff_truncated, r"cannot decode TIFF"),
    BadKind("tiff_40000x40000_declared", "huge.tif", _tiff_declared, r"DecompressionBomb|too large", big=True),
    BadKind("nifti_float_nan", "nan.nii", _nifti_float(float("nan")), r"NaN or infinite"),
    BadKind("nifti_float_neg_inf", "inf.nii", _nifti_float(float("-inf")), r"NaN or infinite"),
    BadKind("nifti_3d_volume", "volume.nii", _nifti_volume, r"NIfTI of shape \(16, 16, 3\) is not a single 2D image"),
    BadKind("nifti_truncated", "cut.nii", _nifti_truncated, r"cannot read NIfTI"),
    BadKind("nifti_gz_corrupt", "corrupt.nii.gz", _nifti_gz_corrupt, r"cannot read NIfTI"),
    BadKind("nifti_32767x32767_declared", "huge.nii", _nifti_huge, r"too large|cannot read NIfTI", big=True),
    BadKind("nifti_gz_40000x40000_declared", "huge.nii.gz", _nifti_gz_huge, r"too large|cannot read NIfTI", big=True),
    # ---- file system
    BadKind("fifo_named_dcm", "pipe.dcm", _fifo, r"not a regular file", call="walk", cli="problem", walk_reason=r"not a regular file"),
    BadKind("dangling_symlink", "dangling.dcm", _dangling, r"file not found", call="walk", cli="problem", walk_reason=r"broken symbolic link"),
    BadKind(
        "unreadable_file",
        "locked.dcm",
        _unreadable,
        r"file not found|Too many levels" if IS_ROOT else r"permission denied",
        call="walk" if IS_ROOT else "reader",
        cli="problem" if IS_ROOT else "failed",
        cli_reason=r"Too many levels of symbolic links" if IS_ROOT else r"[Pp]ermission denied",
        walk_reason=r"cannot stat \(Too many levels of symbolic links\)" if IS_ROOT else None,
    ),
    BadKind("directory_loop", "loopdir", _dir_loop, r"directory loop", call="walk", cli="problem", walk_reason=r"directory loop"),
    BadKind("directory_named_dcm", "folder.dcm", _directory_named_dcm, r"is a directory, not a DICOM file", call="reader", cli="none"),
    BadKind("output_inside_input", "", lambda p: p, r"inside the input folder", call="inout", cli="cli_error"),
    BadKind("output_is_input", "", lambda p: p, r"is the input folder", call="inout", cli="cli_error"),
    BadKind("input_inside_output", "", lambda p: p, r"input folder .* is inside the output folder", call="inout", cli="cli_error"),
]


def _arr(make: Callable[[], object]) -> Callable[[Path], Path]:
    return lambda p: p


_ARRAYS: list[tuple[str, Callable[[], object], str]] = [
    ("array_2d", lambda: np.zeros((ROWS, COLS), np.float32), r"expected a channel-first grayscale array of shape \(1, H, W\), got \(32, 40\)"),
    ("array_4d", lambda: np.zeros((1, 1, ROWS, COLS), np.float32), r"shape \(1, H, W\), got \(1, 1, 32, 40\)"),
    ("array_3_channels", lambda: np.zeros((3, ROWS, COLS), np.uint8), r"shape \(1, H, W\), got \(3, 32, 40\)"),
    ("array_channel_last", lambda: np.zeros((ROWS, COLS, 1), np.uint8), r"shape \(1, H, W\), got \(32, 40, 1\)"),
    ("array_1x1", lambda: np.ones((1, 1, 1), np.float32), r"1x1 pixels is too small"),
    ("array_empty", lambda: np.ones((1, 0, 5), np.float32), r"0x5 pixels is too small"),
    ("array_nan", lambda: np.where(np.eye(ROWS, COLS)[None] > 0, np.nan, 0.5).astype(np.float32), r"NaN or infinite"),
    ("array_inf_tensor", lambda: __import__("torch").full((1, ROWS, COLS), float("inf")), r"NaN or infinite"),
    ("array_bool", lambda: np.zeros((1, ROWS, COLS), bool), r"boolean images are not radiographs"),
    ("array_complex", lambda: np.zeros((1, ROWS, COLS), np.complex64), r"complex images are not supported"),
]
for _name, _make, _reason in _ARRAYS:
    BAD_KINDS.append(BadKind(_name, "", _arr(_make), _reason, call="array", cli="none", array=_make))


@dataclass(frozen=True)
class AcceptedKind:
    name: str
    filename: str
    build: Callable[[Path], Path]


ACCEPTED_KINDS: list[AcceptedKind] = [
    AcceptedKind("dcm_minimum_8x8", "eight.dcm", lambda p: _save_ds(make_radiograph_dataset(8, 8, phi=False), p)),
    AcceptedKind("dcm_mono1_signed", "mono1.dcm", lambda p: _dcm_good(p, photometric="MONOCHROME1", signed=True)),
    AcceptedKind("dcm_8bit", "eightbit.dcm", lambda p: _dcm_good(p, bits_stored=8)),
    AcceptedKind("dcm_rle", "rle.dcm", lambda p: _dcm_good(p, transfer_syntax=RLELossless)),
    AcceptedKind("dcm_jpeg_lossless", "jll.dcm", lambda p: _dcm_good(p, transfer_syntax=JPEGLosslessSV1)),
    AcceptedKind("dcm_big_endian", "be.dcm", lambda p: _dcm_good(p, transfer_syntax=ExplicitVRBigEndian)),
    AcceptedKind("dcm_raw_no_preamble", "raw.dcm", lambda p: save(_small_ds(), p, raw=True)),
    AcceptedKind("dcm_no_window", "nowin.dcm", lambda p: _dcm_good(p, window=None)),
    AcceptedKind("dcm_constant_image", "flat.dcm", lambda p: _save_ds(make_radiograph_dataset(ROWS, COLS, pixels=np.full((ROWS, COLS), 7), phi=False), p)),
    # pydicom's CT / MR / SC samples (odd encodings, overlays) rewritten as DX radiographs
    AcceptedKind("pydicom_CT_small_as_dx", "CT_small.dcm", _dcm_pydicom_as_dx("CT_small.dcm")),
    AcceptedKind("pydicom_MR_small_bigendian_as_dx", "MR_be.dcm", _dcm_pydicom_as_dx("MR_small_bigendian.dcm")),
    AcceptedKind("pydicom_MR_small_RLE_as_dx", "MR_rle.dcm", _dcm_pydicom_as_dx("MR_small_RLE.dcm")),
    AcceptedKind("pydicom_examples_overlay_as_dx", "overlay.dcm", _dcm_pydicom_as_dx("examples_overlay.dcm")),
    AcceptedKind("pydicom_image_deflated_as_dx", "deflated.dcm", _dcm_pydicom_as_dx("image_dfl.dcm")),
    AcceptedKind("png_16bit", "sixteen.png", lambda p: _write(p, png_bytes(_gray(bits=16)))),
    AcceptedKind("png_rgb_equal_channels", "grayrgb.png", lambda p: _write(p, png_bytes(np.repeat(_gray()[..., None], 3, -1)))),
    AcceptedKind("png_2x2", "two.png", lambda p: _write(p, png_bytes(np.array([[0, 9], [200, 255]], np.uint8)))),
    AcceptedKind("tiff_float_finite", "float.tif", _tiff_float(0.25)),
    AcceptedKind("nifti_int16", "img.nii", lambda p: _write(p, _nifti_bytes(synthetic_chest(COLS, ROWS).astype(np.int16)))),
    AcceptedKind("nifti2_uncompressed", "img2.nii", lambda p: _write(p, _nifti_bytes(synthetic_chest(COLS, ROWS).astype(np.int16), two=True))),
    AcceptedKind("nifti_gz_float", "img.nii.gz", lambda p: _write(p, gzip.compress(_nifti_bytes(np.random.default_rng(5).random((COLS, ROWS), dtype=np.float32)), mtime=0))),
]


# --------------------------------------------------------------------------- trees


@contextlib.contextmanager
def memory_cap(extra: int = 768 * 2**20):
    """Cap this process's address space at its current size + ``extra`` (protects the test
    machine from a reader that would allocate a declared-huge image); restored on exit."""
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as handle:
            size = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, StopIteration):  # pragma: no cover - not Linux
        yield
        return
    cap = size + extra if hard == resource.RLIM_INFINITY else min(hard, size + extra)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def digest_tree(root: Path) -> dict[str, str]:
    """``relpath -> SHA-256`` of every regular file (links and FIFOs recorded by kind, never opened)."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + f":{stat.S_IMODE(st.st_mode):o}"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode):o}"
    return out


def output_files(out_dir: Path) -> list[Path]:
    """Regular files under ``out_dir`` outside the state folder."""
    found = []
    for folder, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if d != STATE_DIR]
        found.extend(Path(folder) / f for f in files)
    return sorted(found)


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp"))


# ------------------------------------------------------------------------ networks


def tiny_network(seed: int = 0, mu: float = 0.01, working_size: int = 32):
    import torch

    from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet

    torch.manual_seed(seed)
    return PriCheXyNet(FlowFieldGenerator(init_features=2), mu=mu, working_size=working_size)


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    from monai_prichexy.weights import save_checkpoint

    return save_checkpoint(path, tiny_network(seed))


def file_anonymizer(network=None, key: bytes = b"reliability-test-key-0123456789", **deid):
    from monai_prichexy.dicom import DeidConfig
    from monai_prichexy.pipeline import Deformer, FileAnonymizer

    return FileAnonymizer(Deformer(network if network is not None else tiny_network()), DeidConfig(key=key, **deid))


def anonymize_one(anonymizer, src: Path, out_dir: Path, fmt: str | None = None) -> Path:
    """One file through the per-file anonymizer, its format detected as the batch does."""
    from monai_prichexy.formats import SUFFIXES, detect_format

    if fmt is None:
        with open(src, "rb") as handle:
            fmt = detect_format(src, handle.read(512))
    if fmt is None:
        raise ValueError(f"{src}: not a supported image")
    dst = out_dir / ("anonymized" + SUFFIXES[fmt])
    anonymizer.anonymize(src, fmt, dst)
    return dst
