"""Decode one radiograph file into its native stored values and a meta dict without PHI (no MONAI).

The core of :class:`~monai_prichexy.data.RadiographReader` (a MONAI ``ImageReader``, whose module
docstring describes the values and the meta keys): the reader's ``read`` and ``get_data`` are
:func:`decode_radiograph` and :func:`radiograph_data`, which the CLI's batch calls directly, so
that anonymizing an archive does not import MONAI (issue 12) and reads files the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import ImageFile, UnsupportedImageError, detect_format, read_image
from ..transforms.meta import (
    RADIOGRAPH_DTYPE,
    RADIOGRAPH_FORMAT,
    RADIOGRAPH_VALUE_RANGE,
    RADIOGRAPH_VIEW_LUT,
    RADIOGRAPH_WRITE_INFO,
)

__all__ = ["decode_radiograph", "radiograph_data"]

#: MONAI's ``MetaKeys.SPATIAL_SHAPE`` and ``MetaKeys.ORIGINAL_CHANNEL_DIM`` (the same strings; a test checks)
SPATIAL_SHAPE = "spatial_shape"
ORIGINAL_CHANNEL_DIM = "original_channel_dim"


def decode_radiograph(path: str | os.PathLike, fmt: str | None = None, allow_secondary_capture: bool = False,
                      data: bytes | None = None):
    """The decoded file: a :class:`~monai_prichexy.dicom.Radiograph` or a :class:`~monai_prichexy.formats.ImageFile`.

    ``fmt``: the format when the caller detected it already (:func:`~monai_prichexy.formats.detect_format`);
    ``data``: a DICOM file's bytes when the caller has read them already (``path`` then names it
    in errors only). A refused file raises :class:`~monai_prichexy.dicom.UnsupportedDicomError` or
    :class:`~monai_prichexy.formats.UnsupportedImageError`, whose message starts with the path.
    """
    path = Path(path)
    if fmt is None:
        with open(path, "rb") as handle:
            fmt = detect_format(path, handle.read(512))
    if fmt == "dicom":
        from ..dicom import read_radiograph  # pydicom only when a DICOM file is read

        return read_radiograph(path, allow_secondary_capture=allow_secondary_capture, data=data)
    if fmt is None:
        raise UnsupportedImageError(path, "not a radiograph file (DICOM, PNG, JPEG, TIFF or NIfTI)")
    return read_image(path, fmt)


def radiograph_data(img) -> tuple[np.ndarray, dict[str, Any]]:
    """``(rows, columns)`` native values of a decoded file and its meta dict without PHI."""
    meta: dict[str, Any] = {}
    if isinstance(img, ImageFile):
        array = img.array
        meta[RADIOGRAPH_FORMAT] = img.format
        meta[RADIOGRAPH_WRITE_INFO] = dict(img.info)
        if np.issubdtype(array.dtype, np.integer):
            info = np.iinfo(array.dtype)
            meta[RADIOGRAPH_VALUE_RANGE] = (int(info.min), int(info.max))
        else:
            meta[RADIOGRAPH_VALUE_RANGE] = None
    else:  # a DICOM Radiograph
        array = img.stored
        meta[RADIOGRAPH_FORMAT] = "dicom"
        meta[RADIOGRAPH_VALUE_RANGE] = tuple(int(v) for v in img.value_range)
        meta[RADIOGRAPH_VIEW_LUT] = img.view_lut  # computed by the reader on the values present
    meta[RADIOGRAPH_DTYPE] = array.dtype.name
    meta[SPATIAL_SHAPE] = np.asarray(array.shape)
    meta[ORIGINAL_CHANNEL_DIM] = "no_channel"
    return array, meta
