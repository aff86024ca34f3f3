"""Write a (deformed) radiograph back to DICOM, atomically.

:func:`write_radiograph` takes the :class:`~monai_prichexy.dicom.reader.Radiograph` that was
read, the new *stored* values (same rows x cols; floats are rounded, everything is clipped to
the range of BitsStored / PixelRepresentation), de-identifies the header
(:mod:`~monai_prichexy.dicom.deidentify`) and writes a file with the same Rows, Columns,
BitsAllocated, BitsStored, HighBit, PhotometricInterpretation and PixelRepresentation.

Transfer syntax (see :func:`choose_transfer_syntax`):

* kept: Explicit VR Little Endian, Implicit VR Little Endian, Deflated Explicit VR Little
  Endian (uncompressed pixels), and the lossless-only compressions for which pydicom has a
  working encoder here: RLE Lossless (pydicom's own encoder), JPEG 2000 Lossless
  (pylibjpeg-openjpeg) and JPEG-LS Lossless (only if pyjpegls is installed);
* everything else is written as Explicit VR Little Endian and reported as re-encoded: lossy
  inputs (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000 (.91), HTJ2K, ...) are never
  re-encoded lossy, JPEG Lossless (process 14) and HTJ2K Lossless have no encoder in pydicom,
  Explicit VR Big Endian is retired.

The file is written to a temporary file in the output folder, flushed and fsync'ed, read back
and checked (decodes to exactly the stored values, file meta consistent with the dataset), and
only then moved into place with :func:`os.replace`. On any failure the temporary file is
removed and nothing appears at ``out_path``. The input file is never written to.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from ..atomic import atomic_write
from ..hashing import sha256_bytes
from .deidentify import DeidConfig, DeidResult, copy_dataset, deidentify
from .errors import DicomWriteError
from .profile import PIXEL_DATA
from .reader import Radiograph, read_radiograph, stored_value_range

__all__ = [
    "WriteResult",
    "write_radiograph",
    "write_dataset",
    "choose_transfer_syntax",
    "prepare_stored",
]

logger = logging.getLogger(__name__)

_NATIVE_KEPT = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
_LOSSLESS_ENCODABLE = (RLELossless, JPEGLSLossless, JPEG2000Lossless)


@dataclass
class WriteResult:
    """What was written.

    Attributes:
        path: the output file.
        transfer_syntax: transfer syntax of the output.
        source_transfer_syntax: transfer syntax of the input.
        reencoded: the transfer syntax differs from the input's.
        reason: why it was re-encoded (``None`` when kept).
        sop_instance_uid: the new SOP Instance UID (also in the file meta).
        clipped: number of values clipped to the BitsStored range.
        deid: what the header de-identification did (``None`` without de-identification).
        sha256: SHA-256 of the file's bytes, from the verifying read-back (``None`` unless asked for).
    """

    path: Path
    transfer_syntax: UID
    source_transfer_syntax: UID | None
    reencoded: bool
    reason: str | None
    sop_instance_uid: str
    clipped: int = 0
    deid: DeidResult | None = None
    notes: list[str] = field(default_factory=list)
    sha256: str | None = None


def _encoder_available(ts: UID) -> bool:
    try:
        return bool(get_encoder(ts).is_available)
    except Exception:
        return False


def choose_transfer_syntax(source: UID | str | None) -> tuple[UID, str | None]:
    """``(transfer syntax to write, reason it differs from source or None)``."""
    if source is None or str(source) == "":
        return ExplicitVRLittleEndian, "unknown source transfer syntax"
    source = UID(str(source))
    if source in _NATIVE_KEPT:
        return source, None
    if source in _LOSSLESS_ENCODABLE:
        if _encoder_available(source):
            return source, None
        return ExplicitVRLittleEndian, f"no {source.name} encoder available; written uncompressed"
    if source == "1.2.840.10008.1.2.2":
        return ExplicitVRLittleEndian, "Explicit VR Big Endian is retired; written little endian"
    if source in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.201",
                  "1.2.840.10008.1.2.4.202"):
        return ExplicitVRLittleEndian, f"pydicom cannot encode {source.name}; written uncompressed"
    name = source.name if source.is_transfer_syntax else str(source)
    return ExplicitVRLittleEndian, f"{name} is (possibly) lossy; not re-encoded lossy, written uncompressed"


def prepare_stored(
    stored, rows: int, cols: int, bits_allocated: int, bits_stored: int, pixel_representation: int
) -> tuple[np.ndarray, int]:
    """Check the shape, round floats, clip to the BitsStored range, cast. ``(array, n_clipped)``."""
    arr = np.asarray(stored)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (rows, cols):
        raise ValueError(f"stored values have shape {arr.shape}, the image is ({rows}, {cols})")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"stored values must be integers or floats, not {arr.dtype}")
    lo, hi = stored_value_range(bits_stored, pixel_representation)
    dtype = np.dtype(("<i" if pixel_representation else "<u") + str(bits_allocated // 8))
    if arr.dtype.newbyteorder("<") == dtype and lo <= int(arr.min()) and int(arr.max()) <= hi:
        return np.ascontiguousarray(arr, dtype=dtype), 0  # already the stored type and range: nothing to do
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("stored values contain NaN or infinity")
        arr = np.rint(arr)
    else:
        arr = arr.astype(np.int64, copy=False)
    clipped = int(np.count_nonzero((arr < lo) | (arr > hi)))
    if clipped:
        logger.warning("%d stored values outside [%d, %d] clipped", clipped, lo, hi)
    arr = np.clip(arr, lo, hi)
    return np.ascontiguousarray(arr.astype(dtype)), clipped


def _set_pixels(ds: Dataset, arr: np.ndarray, ts: UID, info: dict) -> tuple[UID, str | None]:
    """Put ``arr`` into ``ds`` with transfer syntax ``ts`` (falls back to uncompressed)."""
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = info["photometric"]
    ds.BitsAllocated = info["bits_allocated"]
    ds.BitsStored = info["bits_stored"]
    ds.HighBit = info["bits_stored"] - 1
    ds.PixelRepresentation = info["pixel_representation"]
    for keyword in ("PlanarConfiguration", "SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            del ds[keyword]  # stale after the deformation
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = 1
    reason = None
    if ts.is_encapsulated:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.compress(ts, arr=arr, generate_instance_uid=False)
            return ts, None
        except Exception as exc:  # encoder refused: lossless uncompressed fallback
            reason = f"{ts.name} encoding failed ({type(exc).__name__}: {exc}); written uncompressed"
            logger.warning(reason)
            ts = ExplicitVRLittleEndian
            if PIXEL_DATA in ds:
                del ds[PIXEL_DATA]
    data = arr.tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.add_new(PIXEL_DATA, "OW" if info["bits_allocated"] == 16 else "OB", data)
    ds.file_meta.TransferSyntaxUID = ts
    return ts, reason


def _verify(path: Path, arr: np.ndarray, sop_uid: str, ts: UID, sha256: bool = False) -> str | None:
    """Read the written file back once; returns the SHA-256 of its bytes (``sha256``). Uncompressed: parse it
    and compare the Pixel Data bytes with what was meant (no decode, no copy: numpy views); compressed: decode
    it with our own reader and compare values."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DicomWriteError(f"{path}: written file does not read back ({type(exc).__name__}: {exc})") from None
    if ts.is_encapsulated:  # the encoder's output must decode to exactly these values
        check = read_radiograph(path, allow_secondary_capture=True, data=raw)
        dataset, same = check.dataset, check.stored.shape == arr.shape and np.array_equal(check.stored, arr)
    else:
        try:
            dataset = pydicom.dcmread(io.BytesIO(raw))
            expected = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
            pixels = dataset.PixelData
            same = ((int(dataset.Rows), int(dataset.Columns)) == arr.shape and len(pixels) >= expected.size
                    and np.array_equal(np.frombuffer(pixels, dtype=np.uint8, count=expected.size), expected))
        except Exception as exc:  # noqa: BLE001 - whatever makes the file unreadable fails the write
            raise DicomWriteError(f"{path}: written file does not read back ({type(exc).__name__}: {exc})") from None
    meta_uid = str(dataset.file_meta.get("MediaStorageSOPInstanceUID", ""))
    if meta_uid != sop_uid or str(dataset.get("SOPInstanceUID", "")) != sop_uid:
        raise DicomWriteError(f"{path}: SOP Instance UID of file meta and dataset differ after writing")
    if not same:
        raise DicomWriteError(f"{path}: pixel values read back differ from the values written")
    return sha256_bytes(raw) if sha256 else None


def write_dataset(
    ds: Dataset,
    stored,
    out_path: str | os.PathLike,
    *,
    photometric: str,
    bits_allocated: int,
    bits_stored: int,
    pixel_representation: int,
    source_transfer_syntax: UID | str | None = None,
    lossy_source: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
    verify: bool = True,
    sha256: bool = False,
) -> WriteResult:
    """Write an already de-identified dataset ``ds`` (modified in place) with ``stored`` pixels.

    ``protect``: paths that must never be written (the inputs); ``sha256``: also hash the bytes
    the verification reads back (:attr:`WriteResult.sha256`; needs ``verify``). Raises ``ValueError`` for bad
    arguments and :class:`DicomWriteError` when writing or verification fails.
    """
    out_path = Path(out_path)
    for p in protect:
        if p is not None and Path(p).exists() and out_path.exists() and os.path.samefile(p, out_path):
            raise ValueError(f"refusing to overwrite the input file {p}")
        if p is not None and Path(os.path.abspath(p)) == Path(os.path.abspath(out_path)):
            raise ValueError(f"refusing to overwrite the input file {p}")
    if not str(ds.get("SOPClassUID", "") or "").strip():
        raise ValueError("dataset has no SOPClassUID")
    if not str(ds.get("SOPInstanceUID", "") or "").strip():
        raise ValueError("dataset has no SOPInstanceUID")
    photometric = str(photometric).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric interpretation {photometric} is not supported")
    if bits_allocated not in (8, 16) or not 8 <= bits_stored <= bits_allocated:
        raise ValueError(f"unsupported BitsAllocated/BitsStored {bits_allocated}/{bits_stored}")
    rows = int(ds.get("Rows", np.shape(stored)[-2]))
    cols = int(ds.get("Columns", np.shape(stored)[-1]))
    arr, clipped = prepare_stored(stored, rows, cols, bits_allocated, bits_stored, pixel_representation)

    ts, reason = choose_transfer_syntax(source_transfer_syntax)
    if "ImageType" in ds and ds.ImageType:  # the pixels are no longer the acquired ones
        values = list(ds.ImageType) if ds["ImageType"].VM > 1 else [str(ds.ImageType)]
        values[0] = "DERIVED"
        ds.ImageType = values
    if lossy_source and str(ds.get("LossyImageCompression", "")).strip() != "01":
        ds.LossyImageCompression = "01"

    from .. import __version__

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PRICHEXY_{__version__}"[:16]
    ds.file_meta = meta
    if PIXEL_DATA in ds:
        del ds[PIXEL_DATA]
    info = dict(
        photometric=photometric,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=pixel_representation,
    )
    ts, fallback = _set_pixels(ds, arr, ts, info)
    reason = reason or fallback
    ds.file_meta.TransferSyntaxUID = ts

    uid = str(ds.SOPInstanceUID)
    digest: list[str] = []  # of the bytes verified, which are the bytes moved into place
    try:
        atomic_write(
            out_path,
            lambda handle: ds.save_as(handle, enforce_file_format=True),
            verify=(lambda tmp: digest.append(_verify(tmp, arr, uid, ts, sha256))) if verify else None,
        )
    except (DicomWriteError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise DicomWriteError(f"{out_path}: writing failed ({type(exc).__name__}: {exc})") from exc

    source = UID(str(source_transfer_syntax)) if source_transfer_syntax else None
    return WriteResult(
        path=out_path,
        transfer_syntax=ts,
        source_transfer_syntax=source,
        reencoded=source is None or ts != source,
        reason=reason,
        sop_instance_uid=str(ds.SOPInstanceUID),
        clipped=clipped,
        sha256=digest[0] if digest else None,
    )


def write_radiograph(
    rad: Radiograph,
    stored,
    out_path: str | os.PathLike,
    *,
    deid: DeidConfig | None,
    verify: bool = True,
    sha256: bool = False,
) -> WriteResult:
    """De-identify ``rad.dataset`` (unless ``deid is None``) and write it with ``stored`` pixels.

    ``deid`` is required on purpose: pass ``None`` to keep the header as it is (a new SOP
    Instance UID is still generated, since the pixels changed). ``rad`` is not modified.

    Raises:
        BurnedInAnnotationError: see :func:`~monai_prichexy.dicom.deidentify.deidentify`.
        ValueError: wrong shape / dtype of ``stored``, or ``out_path`` is the input file.
        DicomWriteError: writing or read-back verification failed (no file left behind).
    """
    if deid is not None:
        result = deidentify(rad.dataset, deid, keep_pixel_data=False)
        ds = result.dataset
    else:
        result = None
        ds = copy_dataset(rad.dataset, keep_pixel_data=False)
        ds.SOPInstanceUID = generate_uid()
    written = write_dataset(
        ds,
        stored,
        out_path,
        photometric=rad.photometric,
        bits_allocated=rad.bits_allocated,
        bits_stored=rad.bits_stored,
        pixel_representation=rad.pixel_representation,
        source_transfer_syntax=rad.transfer_syntax,
        lossy_source=rad.lossy,
        protect=(rad.path,) if rad.path is not None else (),
        verify=verify,
        sha256=sha256,
    )
    written.deid = result
    return written
