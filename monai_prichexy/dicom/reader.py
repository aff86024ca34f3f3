"""Read a single-frame grayscale radiograph (CR, DX, DR, ...) from a DICOM file.

:func:`read_radiograph` returns a :class:`Radiograph` with

* ``stored``: the *stored* pixel values (rows x cols, the dtype pydicom decodes them to:
  ``uint8``/``int8``/``uint16``/``int16``), which the pipeline deforms and writes back, and
* ``view``: what the networks see, ``float32`` in ``[0, 1]``: Modality LUT (rescale or LUT),
  then VOI LUT or window (first one), otherwise a min-max stretch, then inverted for
  ``MONOCHROME1`` so that bone is bright. The Presentation LUT Shape is ignored: the
  photometric interpretation alone decides the polarity.

Anything else is refused with :class:`~monai_prichexy.dicom.errors.UnsupportedDicomError`
whose message names the file and the reason.

Scope (:func:`check_scope`, after the structural checks and before the pixels are decoded):
only projection radiographs are accepted, judged by Modality and SOP Class UID:

* Modality CR, DX or DR (DR is no DICOM defined term but some vendors write it). Every other
  modality (CT, MR, US, NM, PT, MG, IO, XA, RF, RT*, OT, ...) is refused, RG (film/screen) as
  well: the networks were trained on CR/DX chest radiographs only.
* SOP Class CR Image Storage or Digital X-Ray Image Storage (for presentation or for
  processing). Every other class (CT, MR, US, NM, PET, RT, mammography, intra-oral, enhanced
  and multi-frame classes, ...) is refused.
* Secondary Capture (``1.2.840.10008.5.1.4.1.1.7`` and its multi-frame variants ``.7.1`` to
  ``.7.4``) is refused unless ``allow_secondary_capture=True`` (CLI:
  ``--allow-secondary-capture``); then its Modality may also be OT or missing. The
  multi-frame variants are still refused by the single-frame check.
* A missing Modality is decided by the SOP class; a missing SOP class by the Modality. A
  dataset without both (possible only for an in-memory dataset or a sloppy file) is accepted,
  as before this check existed.

Out-of-scope files raise :class:`~monai_prichexy.dicom.errors.NotARadiographError` (a subclass
of ``UnsupportedDicomError``).

Files without the 128-byte preamble and ``DICM`` prefix (raw datasets, old archives) are read
with ``force=True`` and accepted only when they parse as a complete image dataset: a SOP
Class UID, every mandatory image attribute, native (not encapsulated) pixel data of exactly
the declared length and no element cut short by the end of the file. Anything else that is
not a DICOM Part 10 file is refused. The input file is only ever opened for reading.
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
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.pixels.processing import apply_voi, apply_windowing
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ..lut import apply_view_lut
from .errors import NotARadiographError, NotDicomError, UnsupportedDicomError

__all__ = [
    "Radiograph",
    "read_radiograph",
    "radiograph_from_dataset",
    "compute_view",
    "compute_view_lut",
    "present_values",
    "check_scope",
    "PROJECTION_MODALITIES",
    "RADIOGRAPH_SOP_CLASSES",
    "SECONDARY_CAPTURE_SOP_CLASSES",
    "LOSSLESS_TRANSFER_SYNTAXES",
    "MIN_SIZE",
    "MAX_SIZE",
]

logger = logging.getLogger(__name__)

#: smallest and largest accepted Rows / Columns
MIN_SIZE = 8
MAX_SIZE = 16384

#: transfer syntaxes whose pixel data are exactly the stored values (uncompressed or
#: lossless-only compression). Everything else (JPEG baseline/extended, JPEG-LS near-lossless,
#: JPEG 2000 "lossy or lossless", ...) is treated as possibly lossy.
LOSSLESS_TRANSFER_SYNTAXES = frozenset(
    UID(u)
    for u in (
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Process 14
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, Process 14 SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    )
)

#: modalities of the projection radiographs accepted (see the module docstring)
PROJECTION_MODALITIES = ("CR", "DX", "DR")

#: SOP classes of projection radiographs accepted
RADIOGRAPH_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
}

#: Secondary Capture SOP classes, accepted only with ``allow_secondary_capture``
SECONDARY_CAPTURE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}

_MANDATORY = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
_FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)  # Float / Double Float Pixel Data
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class Radiograph:
    """A decoded single-frame grayscale radiograph.

    Attributes:
        dataset: the pydicom dataset as read (still with its PHI and its pixel data).
        stored: stored pixel values, ``rows x cols``, dtype as decoded (``uint8``, ``int8``,
            ``uint16`` or ``int16``), unused high bits masked / sign-extended.
        view_lut: ``(2, K)`` float64 table: the K distinct stored values of the image and their
            view (:func:`compute_view`, a pointwise map) -- the view without a full-size pass.
        view: ``float32`` ``rows x cols`` in ``[0, 1]`` after Modality LUT, VOI LUT or window
            (min-max when there is none) and inversion of ``MONOCHROME1``; computed from
            ``view_lut`` when first asked for (equal to ``compute_view(dataset, stored)``).
        photometric: ``"MONOCHROME1"`` or ``"MONOCHROME2"``.
        bits_stored, bits_allocated, high_bit: from the header.
        pixel_representation: 0 unsigned, 1 two's complement.
        transfer_syntax: the transfer syntax of the input.
        path: the file it was read from (``None`` for an in-memory dataset).
        lossy: the pixels have undergone lossy compression (lossy transfer syntax or
            ``LossyImageCompression == "01"``).
    """

    dataset: Dataset
    stored: np.ndarray
    view_lut: np.ndarray
    photometric: str
    bits_stored: int
    pixel_representation: int
    transfer_syntax: UID
    bits_allocated: int = 16
    high_bit: int = 15
    path: Path | None = None
    lossy: bool = False
    notes: list[str] = field(default_factory=list)

    _view: np.ndarray | None = field(default=None, repr=False)

    @property
    def view(self) -> np.ndarray:
        if self._view is None:
            self._view = apply_view_lut(self.stored, self.view_lut)
        return self._view

    @view.setter
    def view(self, value: np.ndarray | None) -> None:  # None frees it
        self._view = value

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.stored.shape)  # type: ignore[return-value]

    @property
    def value_range(self) -> tuple[int, int]:
        """Smallest and largest value representable with ``bits_stored`` bits."""
        return stored_value_range(self.bits_stored, self.pixel_representation)


def stored_value_range(bits_stored: int, pixel_representation: int) -> tuple[int, int]:
    if pixel_representation == 1:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def _refuse(path, reason: str) -> UnsupportedDicomError:
    return UnsupportedDicomError(path, reason)


def _truncated_elements(ds: Dataset) -> list[str]:
    """Top-level elements whose value was cut short by the end of the file."""
    cut = []
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != _UNDEFINED_LENGTH
            and raw.value is not None
            and len(raw.value) < raw.length
        ):
            cut.append(str(raw.tag))
    return cut


def _is_undefined_length(elem) -> bool:
    if isinstance(elem, RawDataElement):
        return elem.length == _UNDEFINED_LENGTH
    return bool(getattr(elem, "is_undefined_length", False))


def _read_dataset(path: Path, data: bytes | None = None) -> Dataset:
    """Parse the file, or its ``data`` when given (see the module docstring); raises UnsupportedDicomError."""
    source = path if data is None else io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(source, force=False)
    except InvalidDicomError:
        ds = None
    except PermissionError:
        raise _refuse(path, "permission denied") from None
    except Exception as exc:  # corrupt header
        raise _refuse(path, f"corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from None
    if ds is not None:
        cut = _truncated_elements(ds)
        if cut:
            raise _refuse(path, f"file is truncated (value of {', '.join(cut)} cut short)")
        return ds

    # No preamble / 'DICM': accept only a complete raw dataset (see module docstring).
    reason = "not a DICOM file (no 'DICM' prefix and does not parse as a complete image dataset)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if data is not None:
                source.seek(0)
            ds = pydicom.dcmread(source, force=True)
            if _truncated_elements(ds):
                raise NotDicomError(path, reason + "; truncated")
            # convert every element now: garbage read with force=True shows up here
            for _ in ds.iterall():
                pass
            sop_class = str(ds.get("SOPClassUID", "") or "")
    except UnsupportedDicomError:
        raise
    except Exception:
        raise NotDicomError(path, reason) from None
    if not sop_class or not UID(sop_class).is_valid or any(t not in ds for t in _MANDATORY):
        raise NotDicomError(path, reason)
    pixel = ds.get_item(_PIXEL_DATA)
    if pixel is None or _is_undefined_length(pixel):
        raise NotDicomError(path, reason + "; a raw dataset must carry native pixel data")
    # The transfer syntax of a raw dataset is whatever pydicom found while parsing.
    implicit, little = ds.original_encoding
    if not little:
        ts = ExplicitVRBigEndian
    else:
        ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ds


def _int_attr(ds: Dataset, keyword: str, path, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise _refuse(path, f"missing mandatory attribute {keyword}")
        value = default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _refuse(path, f"invalid value for {keyword}") from None


def _check_header(ds: Dataset, path) -> dict:
    if any(ds.get_item(t) is not None for t in _FLOAT_PIXEL_TAGS) and _PIXEL_DATA not in ds:
        raise _refuse(path, "float pixel data (Float/Double Float Pixel Data) is not supported")
    if _PIXEL_DATA not in ds:
        raise _refuse(path, "no PixelData element (not an image, or the file is truncated)")
    if any(ds.get_item(t) is not None for t in _FLOAT_PIXEL_TAGS):
        raise _refuse(path, "more than one pixel data element (Pixel Data and Float Pixel Data)")
    for keyword in _MANDATORY:
        if keyword not in ds or ds[keyword].value in (None, ""):
            raise _refuse(path, f"missing mandatory attribute {keyword}")

    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _refuse(path, f"photometric interpretation {photometric} is not grayscale (need MONOCHROME1/2)")
    samples = _int_attr(ds, "SamplesPerPixel", path, default=1)
    if samples != 1:
        raise _refuse(path, f"SamplesPerPixel is {samples}, need 1 (grayscale)")
    frames = _int_attr(ds, "NumberOfFrames", path, default=1)
    if frames != 1:
        raise _refuse(path, f"NumberOfFrames is {frames}; only single-frame images are supported")

    rows = _int_attr(ds, "Rows", path)
    cols = _int_attr(ds, "Columns", path)
    for name, n in (("Rows", rows), ("Columns", cols)):
        if n < MIN_SIZE or n > MAX_SIZE:
            raise _refuse(path, f"{name} = {n} is outside the accepted range {MIN_SIZE}..{MAX_SIZE}")

    bits_allocated = _int_attr(ds, "BitsAllocated", path)
    if bits_allocated == 1:
        raise _refuse(path, "1-bit (binary) pixel data is not a radiograph")
    if bits_allocated not in (8, 16):
        raise _refuse(path, f"BitsAllocated = {bits_allocated} is not supported (need 8 or 16)")
    bits_stored = _int_attr(ds, "BitsStored", path, default=bits_allocated)
    if bits_stored > 16:
        raise _refuse(path, f"BitsStored = {bits_stored} is more than 16")
    if bits_stored < 8 or bits_stored > bits_allocated:
        raise _refuse(path, f"BitsStored = {bits_stored} is not in 8..BitsAllocated ({bits_allocated})")
    high_bit = _int_attr(ds, "HighBit", path, default=bits_stored - 1)
    if high_bit != bits_stored - 1:
        raise _refuse(path, f"HighBit = {high_bit} is not BitsStored - 1 = {bits_stored - 1}")
    pixel_representation = _int_attr(ds, "PixelRepresentation", path, default=0)
    if pixel_representation not in (0, 1):
        raise _refuse(path, f"PixelRepresentation = {pixel_representation} is invalid")

    return dict(
        photometric=photometric,
        rows=rows,
        cols=cols,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        high_bit=high_bit,
        pixel_representation=pixel_representation,
    )


def _text_value(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # a value pydicom cannot convert: treated as missing
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else ""
    return str(value or "").strip()


def check_scope(ds: Dataset, path=None, allow_secondary_capture: bool = False) -> None:
    """Refuse a dataset that is not a projection radiograph (see the module docstring).

    Raises:
        NotARadiographError: the message names the file and says why, e.g. ``modality CT is
            not a projection radiograph (accepted: CR, DX, DR)``.
    """
    modality = _text_value(ds, "Modality").upper()
    sop_class = _text_value(ds, "SOPClassUID")
    secondary = sop_class in SECONDARY_CAPTURE_SOP_CLASSES
    if secondary and not allow_secondary_capture and modality in ("", "OT", *PROJECTION_MODALITIES):
        raise NotARadiographError(
            path,
            f"{SECONDARY_CAPTURE_SOP_CLASSES[sop_class]} (SOP class {sop_class}) is refused unless Secondary "
            "Capture is explicitly allowed (--allow-secondary-capture)",
        )
    accepted = PROJECTION_MODALITIES + (("OT",) if secondary and allow_secondary_capture else ())
    if modality and modality not in accepted:
        raise NotARadiographError(
            path, f"modality {modality} is not a projection radiograph (accepted: {', '.join(accepted)})"
        )
    if not sop_class or sop_class in RADIOGRAPH_SOP_CLASSES or (secondary and allow_secondary_capture):
        return
    name = UID(sop_class).name if UID(sop_class).is_valid else "unknown"
    described = f"{name} ({sop_class})" if name != sop_class else sop_class
    raise NotARadiographError(
        path,
        f"SOP class {described} is not a projection radiograph (accepted: CR Image Storage, "
        "Digital X-Ray Image Storage)",
    )


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    implicit, little = ds.original_encoding
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _mask_stored(arr: np.ndarray, bits_stored: int, pixel_representation: int) -> np.ndarray:
    """Make sure unused high bits are cleared (unsigned) or the sign is extended (signed)."""
    nbits = arr.dtype.itemsize * 8
    if bits_stored >= nbits:
        return arr
    if pixel_representation == 0:
        mask = (1 << bits_stored) - 1
        if np.any(arr > mask):
            arr = arr & arr.dtype.type(mask)
        return arr
    lo, hi = stored_value_range(bits_stored, 1)
    if arr.min() < lo or arr.max() > hi:
        unsigned = arr.view(arr.dtype.str.replace("i", "u")) & ((1 << bits_stored) - 1)
        shift = nbits - bits_stored
        arr = (unsigned << shift).view(arr.dtype) >> shift
    return arr


def compute_view(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """The network's view of ``stored``: float32 in [0, 1], bone bright.

    Modality LUT (``apply_modality_lut``), then the first VOI LUT (preferred) or window
    (``apply_voi`` / ``apply_windowing``, i.e. what ``apply_voi_lut`` would pick); the result
    is scaled by the output range of that VOI transform. Without a usable VOI transform, the
    modality values are min-max stretched. ``MONOCHROME1`` is inverted last.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = apply_modality_lut(stored, ds)
        out = None
        lo = hi = None
        voi_seq = ds.get("VOILUTSequence")
        has_voi = bool(voi_seq) and all(voi_seq[0].get(k) is not None for k in ("LUTDescriptor", "LUTData"))
        has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
        if has_voi:
            try:
                out = apply_voi(values, ds, index=0).astype(np.float64)
                item = voi_seq[0]
                data = item.LUTData
                lut = np.frombuffer(data, dtype="<u2") if isinstance(data, bytes) else np.asarray(data)
                lo, hi = float(lut.min()), float(lut.max())
            except Exception as exc:  # malformed LUT: fall back to the window / min-max
                logger.warning("VOI LUT not usable (%s); falling back", exc)
                out = None
        if out is None and has_window:
            try:
                out = apply_windowing(values.astype(np.float64), ds, index=0)
                bits = int(ds.BitsStored)
                if ds.get("ModalityLUTSequence"):
                    lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
                else:
                    lo, hi = (float(v) for v in stored_value_range(bits, int(ds.PixelRepresentation)))
                    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
                        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
                        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
            except Exception as exc:
                logger.warning("window not usable (%s); falling back to min-max", exc)
                out = None
        if out is None:
            out = np.asarray(values, dtype=np.float64)
            lo, hi = float(out.min()), float(out.max())
    view = np.zeros(out.shape, dtype=np.float64) if hi <= lo else (out - lo) / (hi - lo)
    view = np.clip(view, 0.0, 1.0).astype(np.float32)
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        view = 1.0 - view
    return np.ascontiguousarray(view, dtype=np.float32)


def present_values(stored: np.ndarray) -> np.ndarray:
    """The distinct values of an integer image, sorted (one counting pass for <= 16-bit values)."""
    flat = np.asarray(stored).ravel()
    if np.issubdtype(flat.dtype, np.integer) and flat.dtype.itemsize <= 2 and flat.size:
        low = int(flat.min())
        counts = np.bincount((flat.astype(np.int32) - low) if low else flat, minlength=1)
        return (np.flatnonzero(counts) + low).astype(flat.dtype)
    return np.unique(flat)


def compute_view_lut(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """``(2, K)`` float64: stored values (every one of the image among them) and their :func:`compute_view`.

    :func:`compute_view` maps each stored value on its own; only its min-max fallback looks at the
    image, through the extremes of the modality values. For 8/16-bit values the table spans
    ``stored.min() .. stored.max()``, whose modality values have the image's extremes unless a
    Modality LUT Sequence (not monotonic in general) maps them: then only the values present are
    taken. Either way the table holds exactly what the full-size view holds, computed on at most
    2**BitsStored values instead of every pixel.
    """
    flat = np.asarray(stored)
    if np.issubdtype(flat.dtype, np.integer) and flat.dtype.itemsize <= 2 and flat.size and not ds.get("ModalityLUTSequence"):
        values = np.arange(int(flat.min()), int(flat.max()) + 1).astype(flat.dtype)
    else:
        values = present_values(stored)
    return np.stack([values.astype(np.float64), compute_view(ds, values).astype(np.float64)])


def radiograph_from_dataset(
    ds: Dataset, path: str | os.PathLike | None = None, *, allow_secondary_capture: bool = False
) -> Radiograph:
    """Validate and decode an in-memory dataset (the checks of :func:`read_radiograph`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's value warnings on sloppy headers
        info = _check_header(ds, path)
    ts = _transfer_syntax(ds)
    notes: list[str] = []

    pixel = ds.get_item(_PIXEL_DATA)
    encapsulated = ts.is_encapsulated if ts.is_transfer_syntax else False
    raw_len = None
    encapsulated = encapsulated or _is_undefined_length(pixel)
    if isinstance(pixel, RawDataElement):
        if not encapsulated and pixel.value is not None:
            raw_len = len(pixel.value)
    elif not encapsulated and isinstance(ds.PixelData, (bytes, bytearray)):
        raw_len = len(ds.PixelData)
    if not encapsulated and raw_len is not None:
        expected = info["rows"] * info["cols"] * info["bits_allocated"] // 8
        if raw_len < expected:
            raise _refuse(
                path,
                f"pixel data has {raw_len} bytes, less than Rows*Columns*BitsAllocated/8 = {expected}"
                " (truncated or inconsistent)",
            )
        if raw_len > expected + (expected % 2) + 1:
            raise _refuse(
                path,
                f"pixel data has {raw_len} bytes, more than Rows*Columns*BitsAllocated/8 = {expected}"
                " (inconsistent; undeclared frames?)",
            )

    check_scope(ds, path, allow_secondary_capture=allow_secondary_capture)

    # pydicom needs these to decode; fill defaults of a sloppy header in memory only
    for keyword, value in (
        ("SamplesPerPixel", 1),
        ("BitsStored", info["bits_stored"]),
        ("HighBit", info["high_bit"]),
        ("PixelRepresentation", info["pixel_representation"]),
    ):
        if keyword not in ds:
            setattr(ds, keyword, value)
            notes.append(f"{keyword} missing, assumed {value}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:
        raise _refuse(path, f"pixel data could not be decoded ({type(exc).__name__}: {exc})") from None

    arr = np.asarray(arr)
    if arr.shape != (info["rows"], info["cols"]):
        raise _refuse(path, f"decoded pixel array has shape {arr.shape}, expected ({info['rows']}, {info['cols']})")
    if not np.issubdtype(arr.dtype, np.integer):
        raise _refuse(path, f"decoded pixel data are {arr.dtype}, not integers")
    arr = _mask_stored(arr, info["bits_stored"], info["pixel_representation"])
    want = np.dtype(("i" if info["pixel_representation"] else "u") + str(info["bits_allocated"] // 8))
    if arr.dtype != want:
        lo, hi = stored_value_range(info["bits_stored"], info["pixel_representation"])
        if arr.min() < lo or arr.max() > hi:
            raise _refuse(path, "decoded pixel values exceed the range of BitsStored")
        arr = arr.astype(want)
    stored = np.ascontiguousarray(arr.astype(want.newbyteorder("="), copy=False))

    lossy = ts not in LOSSLESS_TRANSFER_SYNTAXES or str(ds.get("LossyImageCompression", "")).strip() == "01"
    try:
        view_lut = compute_view_lut(ds, stored)
    except Exception as exc:
        raise _refuse(path, f"could not compute the display view ({type(exc).__name__}: {exc})") from None

    return Radiograph(
        dataset=ds,
        stored=stored,
        view_lut=view_lut,
        photometric=info["photometric"],
        bits_stored=info["bits_stored"],
        pixel_representation=info["pixel_representation"],
        transfer_syntax=ts,
        bits_allocated=info["bits_allocated"],
        high_bit=info["high_bit"],
        path=None if path is None else Path(path),
        lossy=lossy,
        notes=notes,
    )


def read_radiograph(path: str | os.PathLike, *, allow_secondary_capture: bool = False, data: bytes | None = None
                    ) -> Radiograph:
    """Read and decode one single-frame grayscale projection radiograph.

    Args:
        path: the file (only opened for reading).
        allow_secondary_capture: accept Secondary Capture images (see :func:`check_scope`).
        data: the file's bytes when the caller has read them already (the batch hashes and
            parses one read of each file); ``path`` then only names the file in errors.

    Raises:
        NotARadiographError: not a projection radiograph (CT, MR, US, NM, PT, ..., or a
            Secondary Capture without ``allow_secondary_capture``); see :func:`check_scope`.
        UnsupportedDicomError: the file is not DICOM, is corrupt or truncated, has no pixel data,
            is colour, multi-frame, 1-bit, float, more than 16 bits, smaller than 8 or larger
            than 16384 pixels per side, lacks mandatory attributes, has pixel data whose length
            does not match Rows x Columns, or cannot be decoded. The message names the file.
    """
    path = Path(path)
    if data is None:
        if not path.exists():
            raise _refuse(path, "file not found")
        if path.is_dir():
            raise _refuse(path, "is a directory, not a DICOM file")
        if not path.is_file():  # opening a FIFO would block forever, a device may never end
            raise _refuse(path, "not a regular file (FIFO, device or socket)")
    ds = _read_dataset(path, data)
    return radiograph_from_dataset(ds, path, allow_secondary_capture=allow_secondary_capture)
