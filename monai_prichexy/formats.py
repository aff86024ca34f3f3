"""Non-DICOM radiograph files: PNG, JPEG, TIFF (8/16-bit, float) and NIfTI; same format out.

:func:`read_image` returns the pixel values as a ``(rows, columns)`` array in the file's own
dtype (``uint8`` / ``uint16`` / ``float32`` ..., the orientation ``numpy.asarray(PIL.Image)``
gives; NIfTI's ``(x, y)`` is transposed to rows first, as the data layer does), together with
what the writer needs to produce the same format. :func:`write_image` writes the deformed
values atomically in the same format, bit depth and (NIfTI) geometry, and *nothing else*:
PNG text/time/ICC chunks, EXIF, JPEG comments, TIFF tags beyond the image structure, NIfTI
``descrip`` / ``aux_file`` / ``intent_name`` / ``db_name`` and header extensions are never
copied, since they can carry names, ids and dates.

JPEG out is lossy (re-encoded, quality 95 by default): the outcome says so. A grayscale image
stored as RGB(A) with identical channels (some ChestX-ray14 PNGs are RGBA) is written as
grayscale. Colour images, multi-page TIFFs, animated PNGs and NIfTI volumes with more than one
slice are refused with :class:`UnsupportedImageError`, whose message names the file.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_bytes

__all__ = [
    "DICOM_SUFFIXES",
    "FORMATS",
    "SUFFIXES",
    "ImageFile",
    "UnsupportedImageError",
    "detect_format",
    "dicom_guessed",
    "read_image",
    "write_image",
    "encode_image",
]

#: format name -> output suffix
SUFFIXES = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "tiff": ".tif", "nifti": ".nii", "nifti-gz": ".nii.gz"}
FORMATS = tuple(SUFFIXES)

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")  # names that say DICOM without the file saying so
_TIFF_LOSSLESS = ("raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits")
_MAX_PIXELS = 16384 * 16384


class UnsupportedImageError(ValueError):
    """The file is not a grayscale 2D image this pipeline can process (message names the file)."""

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path or '<in-memory image>'}: {reason}")


@dataclass
class ImageFile:
    """A decoded non-DICOM image.

    Attributes:
        format: one of :data:`FORMATS` (not ``"dicom"``).
        array: ``(rows, columns)`` pixel values in the stored dtype.
        info: what the writer needs (TIFF compression, NIfTI geometry); no free text, and only
            plain values (str, int, float, tuples, a float64 affine), so that it can travel in a
            MetaTensor's meta dict (:class:`~monai_prichexy.data.RadiographReader`).
        notes: remarks for the manifest (e.g. "RGBA with equal channels written as grayscale").
    """

    format: str
    array: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def lossy_output(self) -> bool:
        return self.format == "jpeg"


def detect_format(path: str | os.PathLike, head: bytes) -> str | None:
    """The format of a file from its first bytes (>= 348) and name; None when not an image.

    ``"dicom"`` is returned for Part 10 files (``DICM`` at offset 128) and, since raw DICOM
    datasets have no magic number, for files named ``*.dcm`` / ``*.dicom`` / ``*.ima`` or
    without any suffix (the DICOM reader decides then).
    """
    name = os.path.basename(os.fspath(path)).lower()
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if name.endswith(".nii.gz") and head.startswith(b"\x1f\x8b"):
        return "nifti-gz"
    if name.endswith(".nii") and (
        (len(head) >= 348 and head[344:348] == b"n+1\x00") or head[4:8] == b"n+2\x00"  # NIfTI-2: magic at 4
    ):
        return "nifti"
    if name == "dicomdir":
        return None
    suffix = os.path.splitext(name)[1]
    if suffix in DICOM_SUFFIXES or suffix == "" or (suffix[1:].isdigit()):
        return "dicom"
    return None


def dicom_guessed(path: str | os.PathLike, head: bytes) -> bool:
    """:func:`detect_format` said ``"dicom"`` from the name alone (no 'DICM' prefix, no DICOM
    suffix): when the DICOM reader then finds no DICOM, the file is simply not an image."""
    return head[128:132] != b"DICM" and os.path.splitext(os.fspath(path))[1].lower() not in DICOM_SUFFIXES


# ----------------------------------------------------------------------------- reading


def _describe(err: Exception, path: Path) -> str:
    """``Type: message`` without the file's path (the message already starts with it)."""
    text = str(err).replace(repr(os.fspath(path)), "the file").replace(os.fspath(path), "the file")
    return f"{type(err).__name__}: {text}"


def _gray_from_pil(img, path) -> tuple[np.ndarray, list[str]]:
    """(rows, cols) array of a PIL image; RGB(A)/LA/P only when the colour carries nothing."""
    mode = img.mode
    notes: list[str] = []
    if mode in ("L", "I;16", "I;16L", "I;16B", "I;16N", "F", "I"):
        arr = np.array(img)  # a writable copy (numpy views of PIL images are read-only)
        if mode == "I":  # 32-bit signed: keep only if it fits 16 bits unsigned (old 16-bit PNGs)
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise UnsupportedImageError(path, "32-bit integer image is not supported (need 8/16-bit or float)")
            arr = arr.astype(np.uint16)
            notes.append("32-bit integer container with 16-bit values written as 16-bit")
        return np.ascontiguousarray(arr), notes
    if mode == "1":
        raise UnsupportedImageError(path, "1-bit (binary) image is not a radiograph")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
        notes.append("palette image written as grayscale")
    if mode in ("LA", "RGB", "RGBA"):
        arr = np.asarray(img)
        colour = arr[..., :-1] if mode in ("LA", "RGBA") else arr
        if mode in ("LA", "RGBA"):
            alpha = arr[..., -1]
            if alpha.size and (alpha.min() != alpha.max() or alpha.min() != 255):
                raise UnsupportedImageError(path, f"{mode} image with transparency is not supported")
        if colour.shape[-1] > 1:
            spread = int(np.max(colour.max(axis=-1).astype(np.int32) - colour.min(axis=-1).astype(np.int32))) if colour.size else 0
            tolerance = 3 if img.format == "JPEG" else 0  # chroma rounding of a gray JPEG stored as colour
            if spread > tolerance:
                raise UnsupportedImageError(path, f"colour image ({mode}) is not a grayscale radiograph")
            gray = np.asarray(img.convert("L")) if tolerance else colour[..., 0]
        else:
            gray = colour[..., 0]
        notes.append(f"{mode} image with equal channels written as grayscale")
        return np.array(gray, order="C"), notes
    raise UnsupportedImageError(path, f"image mode {mode} is not supported (need grayscale 8/16-bit)")


def _read_pil(path: Path, fmt: str) -> ImageFile:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as handle, Image.open(handle) as img:
                if getattr(img, "n_frames", 1) != 1:
                    what = "multi-page TIFF" if fmt == "tiff" else "animated image"
                    raise UnsupportedImageError(path, f"{what} with {img.n_frames} frames is not supported")
                if img.width * img.height > _MAX_PIXELS:
                    raise UnsupportedImageError(path, f"image of {img.width}x{img.height} pixels is too large")
                img.load()
                info: dict[str, Any] = {}
                if fmt == "tiff":
                    compression = img.info.get("compression", "raw")
                    info["compression"] = compression if compression in _TIFF_LOSSLESS else "tiff_adobe_deflate"
                    if compression not in _TIFF_LOSSLESS:
                        info["recompressed"] = f"TIFF compression {compression} replaced by lossless deflate"
                arr, notes = _gray_from_pil(img, path)
    except UnsupportedImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnsupportedImageError(path, f"cannot decode {fmt.upper()} ({_describe(err, path)})") from None
    if "recompressed" in info:
        notes.append(info.pop("recompressed"))
    if min(arr.shape) < 2:
        raise UnsupportedImageError(path, f"image of {arr.shape[0]}x{arr.shape[1]} pixels is too small")
    return ImageFile(fmt, arr, info, notes)


def _read_nifti(path: Path, fmt: str) -> ImageFile:
    import nibabel as nib

    try:
        img = nib.load(path, mmap=False)
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise UnsupportedImageError(path, f"{type(img).__name__} is not NIfTI")
        declared = tuple(int(n) for n in img.header.get_data_shape())  # checked before any data is read
        if len(declared) < 2 or int(np.prod(declared[2:])) != 1:
            raise UnsupportedImageError(path, f"NIfTI of shape {declared} is not a single 2D image")
        if max(declared[:2]) > 16384 or int(np.prod(declared)) > _MAX_PIXELS:
            raise UnsupportedImageError(path, f"NIfTI of {declared[0]}x{declared[1]} pixels is too large")
        stored = np.asanyarray(img.dataobj.get_unscaled())
    except UnsupportedImageError:
        raise
    except Exception as err:  # nibabel raises many types for corrupt files
        raise UnsupportedImageError(path, f"cannot read NIfTI ({_describe(err, path)})") from None
    shape = stored.shape
    squeezed = stored.reshape(shape[:2]) if len(shape) >= 2 and int(np.prod(shape[2:])) == 1 else None
    if squeezed is None or len(shape) < 2:
        raise UnsupportedImageError(path, f"NIfTI of shape {shape} is not a single 2D image")
    if not (np.issubdtype(squeezed.dtype, np.integer) or np.issubdtype(squeezed.dtype, np.floating)):
        raise UnsupportedImageError(path, f"NIfTI data type {squeezed.dtype} is not supported")
    header = img.header
    # a loaded image keeps its scaling in the data proxy (the header copy has it reset)
    slope, inter = float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))
    if slope == 1.0 and inter == 0.0:
        slope = inter = None
    info = {
        "class": type(img).__name__,
        "shape": shape,
        "affine": np.asarray(img.affine, dtype=np.float64),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "zooms": tuple(float(z) for z in header.get_zooms()),
        "xyzt_units": header.get_xyzt_units(),
        "slope": None if slope is None else float(slope),
        "inter": None if inter is None else float(inter),
        "dtype": squeezed.dtype.newbyteorder("=").name,  # a name, so that info holds plain values only
    }
    array = np.array(squeezed.T, dtype=info["dtype"], order="C")  # (x, y) -> (rows=y, cols=x)
    if min(array.shape) < 2:
        raise UnsupportedImageError(path, f"image of {array.shape[0]}x{array.shape[1]} pixels is too small")
    return ImageFile(fmt, array, info, [])


def read_image(path: str | os.PathLike, fmt: str | None = None) -> ImageFile:
    """Decode a PNG, JPEG, TIFF or NIfTI file (opened read-only); raises :class:`UnsupportedImageError`."""
    path = Path(path)
    if fmt is None:
        with open(path, "rb") as handle:
            fmt = detect_format(path, handle.read(512))
    if fmt in ("png", "jpeg", "tiff"):
        return _read_pil(path, fmt)
    if fmt in ("nifti", "nifti-gz"):
        return _read_nifti(path, fmt)
    raise UnsupportedImageError(path, f"not a supported image format ({fmt or 'unknown'})")


# ----------------------------------------------------------------------------- writing


def _pil_image(arr: np.ndarray):
    from PIL import Image

    if arr.dtype == np.uint8:
        return Image.fromarray(arr)  # mode L
    if arr.dtype == np.uint16:
        return Image.fromarray(arr)  # mode I;16
    if arr.dtype == np.float32:
        return Image.fromarray(arr)  # mode F (TIFF only)
    raise ValueError(f"cannot write {arr.dtype} pixels")


def encode_image(image: ImageFile, values: np.ndarray, jpeg_quality: int = 95) -> bytes:
    """The bytes of ``values`` (same shape/dtype as ``image.array``) in ``image``'s format."""
    values = np.ascontiguousarray(values)
    if values.shape != image.array.shape or values.dtype != image.array.dtype:
        raise ValueError(f"values {values.shape}/{values.dtype} do not match the image {image.array.shape}/{image.array.dtype}")
    out = io.BytesIO()
    if image.format == "png":
        if values.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"PNG cannot hold {values.dtype} pixels")
        _pil_image(values).save(out, format="PNG", optimize=False)
    elif image.format == "jpeg":
        if values.dtype != np.uint8:
            raise ValueError(f"JPEG cannot hold {values.dtype} pixels")
        _pil_image(values).save(out, format="JPEG", quality=int(jpeg_quality), optimize=False)
    elif image.format == "tiff":
        _pil_image(values).save(out, format="TIFF", compression=image.info.get("compression", "raw"))
    elif image.format in ("nifti", "nifti-gz"):
        return _encode_nifti(image, values)
    else:
        raise ValueError(f"unknown format {image.format!r}")
    return out.getvalue()


def _encode_nifti(image: ImageFile, values: np.ndarray) -> bytes:
    import nibabel as nib

    info = image.info
    data = values.T.reshape(info["shape"]).astype(info["dtype"], copy=False)  # back to (x, y, ...)
    cls = nib.Nifti2Image if info["class"] == "Nifti2Image" else nib.Nifti1Image
    img = cls(data, None)  # a fresh header: no descrip, aux_file, intent_name, db_name, extensions
    header = img.header
    header.set_data_dtype(info["dtype"])
    header.set_zooms(info["zooms"][: len(info["shape"])])
    header.set_xyzt_units(*info["xyzt_units"])
    img.set_qform(info["affine"], code=info["qform_code"])
    img.set_sform(info["affine"], code=info["sform_code"])
    raw = img.to_bytes()
    if info["slope"] is not None:  # nibabel resets scaling for array images: patch it back in
        patched = cls.header_class.from_fileobj(io.BytesIO(raw))
        patched.set_slope_inter(info["slope"], info["inter"] if info["inter"] is not None else 0.0)
        block = patched.binaryblock
        raw = block + raw[len(block) :]
    if image.format == "nifti-gz":
        return gzip.compress(raw, compresslevel=6, mtime=0)  # no file name, no time stamp in the gzip header
    return raw


def write_image(image: ImageFile, values: np.ndarray, path: str | os.PathLike, jpeg_quality: int = 95) -> Path:
    """Encode and write atomically (temp file in the destination folder, fsync, rename)."""
    return atomic_write_bytes(path, encode_image(image, values, jpeg_quality))
