"""PriCheXy-Net deformation of one image file, for the ``anonymize`` infer task (:mod:`.infer`).

For servers whose images already have de-identified headers but original pixels. The task
runs :class:`~monai_prichexy.transforms.DeformAnonymize` (torch + MONAI only) and returns the
deformed image **in the input's format, shape, dtype and value range**:

* PNG, JPEG, TIFF, NIfTI are read and written by the pipeline's own
  :mod:`monai_prichexy.formats` (what ``monai-prichexy anonymize`` uses), so the
  result has the same pixels as the CLI's output for that file (metadata chunks are not copied);
* DICOM (single-frame grayscale) is returned as DICOM with the input's header unchanged and
  the stored values deformed, written uncompressed (Explicit VR Little Endian). The network
  sees the stored values after the modality rescale, min-max scaled and inverted for
  MONOCHROME1; the CLI's view also applies the VOI LUT / window, so for a DICOM with a window
  the two deformations can differ. Headers are *not* de-identified here: use the datastore
  mode (or the CLI) for originals.

Nothing of the request's file name or header is logged.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..transforms import DeformAnonymize

__all__ = ["anonymize_file"]


def _deform_dicom(transform: DeformAnonymize, src: Path, dst: Path) -> dict[str, Any]:
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(os.fspath(src))
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1 or int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
        raise ValueError("only single-frame grayscale DICOM images can be deformed")
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {stored.shape}")
    modality = stored.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
        getattr(ds, "RescaleIntercept", 0) or 0
    )
    low, high = float(modality.min()), float(modality.max())
    view = (modality - low) / (high - low) if high > low else np.zeros_like(modality)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        view = 1.0 - view
    out = transform.deform_values(torch.as_tensor(stored), view=torch.as_tensor(view, dtype=torch.float32))
    if np.issubdtype(stored.dtype, np.integer):
        bits = int(ds.BitsStored)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if int(ds.PixelRepresentation) else (0, (1 << bits) - 1)
        out = out.round().clamp(lo, hi)
    warped = out.cpu().numpy().astype(stored.dtype)

    result = copy.deepcopy(ds)
    result.PixelData = warped.astype(warped.dtype.newbyteorder("<"), copy=False).tobytes()
    result["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
    result.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in result:
            delattr(result, keyword)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        result.save_as(os.fspath(dst), enforce_file_format=True)
    else:  # pydicom 2 (MONAI Label's environment)
        result.is_little_endian, result.is_implicit_VR = True, False
        result.save_as(os.fspath(dst), write_like_original=False)
    return {"format": "dicom", "shape": list(warped.shape), "dtype": str(warped.dtype),
            "min": warped.min().item(), "max": warped.max().item()}


def anonymize_file(transform: DeformAnonymize, src: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, dict]:
    """Deform the image file ``src``; returns ``(result file in out_dir, description)``."""
    from ..formats import SUFFIXES, detect_format, read_image, write_image

    src = Path(src)
    if not src.is_file():
        raise ValueError("the image is not a file (a DICOM series folder is not supported; send one instance)")
    with open(src, "rb") as handle:
        head = handle.read(512)
    kind = detect_format(src, head)
    if kind is None and head[128:132] != b"DICM":
        raise ValueError("not a supported image (DICOM, PNG, JPEG, TIFF, NIfTI)")
    kind = kind or "dicom"
    fd, name = tempfile.mkstemp(prefix="prichexy_anonymized_", suffix=SUFFIXES[kind], dir=out_dir)
    os.close(fd)
    dst = Path(name)
    try:
        if kind == "dicom":
            info = _deform_dicom(transform, src, dst)
        else:
            image = read_image(src, kind)
            warped = transform(image.array[None])[0]
            write_image(image, warped, dst)
            info = {"format": kind, "shape": list(warped.shape), "dtype": str(warped.dtype),
                    "min": warped.min().item(), "max": warped.max().item()}
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return dst, info
