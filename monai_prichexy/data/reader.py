"""``RadiographReader``: the one radiograph reader, a MONAI :class:`~monai.data.ImageReader`.

Every job reads its files through it: the training chain (:func:`~monai_prichexy.data.build_transforms`),
the bundle's ``inference.json``, the CLI and the Deploy app (:class:`~monai_prichexy.pipeline.FileAnonymizer`)
and the report / audit (:func:`~monai_prichexy.pipeline.report.load_view`).

* DICOM (Part 10 or raw, with or without a suffix): :func:`monai_prichexy.dicom.read_radiograph`
  (projection radiographs only; scope checks, stored values, Modality/VOI LUT view);
* PNG, JPEG, TIFF, NIfTI: :func:`monai_prichexy.formats.read_image`.

Each file is decoded once. :meth:`RadiographReader.get_data` returns the file's **native stored
values** as a 2D ``(rows, columns)`` array in the stored dtype -- the orientation of
``numpy.asarray(PIL.Image)`` and pydicom's ``pixel_array`` -- and a meta dict with
``original_channel_dim = "no_channel"``, so ``LoadImage(reader=RadiographReader(), dtype=None)``
followed by ``EnsureChannelFirst`` gives ``(1, rows, columns)``; no ``RowsFirst`` transpose and no
``ToGrayscale`` is needed (colour images are refused, grayscale stored as RGB(A) is reduced to
one channel). Pass ``dtype=None`` to ``LoadImage(d)``: its default (float32) would cast the values.

The meta dict holds no header value and no PHI, only (see
:data:`~monai_prichexy.transforms.meta.RADIOGRAPH_META_KEYS`, kept by
:func:`~monai_prichexy.transforms.strip_phi_meta`):

* ``radiograph_format``: ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"nifti"``, ``"nifti-gz"``;
* ``radiograph_dtype``: the stored dtype's name;
* ``radiograph_value_range``: ``(low, high)`` the values may take (DICOM: the BitsStored range;
  integer images: the dtype's range; float images: ``None``);
* ``radiograph_view_lut`` (DICOM only): ``(2, K)`` float64, the stored values present in the
  image and the network view of each (Modality LUT, VOI LUT or window, MONOCHROME1 inverted:
  :func:`monai_prichexy.dicom.compute_view` is pointwise, so this table *is* the view);
  :class:`~monai_prichexy.transforms.NetworkView` applies it;
* ``radiograph_write_info``: what :func:`monai_prichexy.formats.write_image` needs to write the
  same format and bit depth (TIFF compression, NIfTI geometry: plain values, no free text);
* ``spatial_shape``, ``original_channel_dim``; ``LoadImage`` adds ``filename_or_obj`` (the path),
  which :func:`~monai_prichexy.transforms.strip_phi_meta` replaces by a keyed pseudonym.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple

from ..formats import DICOM_SUFFIXES, UnsupportedImageError
from .decode import decode_radiograph, radiograph_data

__all__ = ["RadiographReader", "RADIOGRAPH_SUFFIXES"]

#: file name endings the reader claims (besides names without a suffix, which may be DICOM)
RADIOGRAPH_SUFFIXES = (*DICOM_SUFFIXES, ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".nii.gz")


class RadiographReader(ImageReader):
    """Read one 2D radiograph (DICOM, PNG, JPEG, TIFF, NIfTI) as its native stored values.

    Args:
        allow_secondary_capture: accept DICOM Secondary Capture images (by default only CR / DX
            projection radiographs; see :func:`monai_prichexy.dicom.reader.check_scope`).
        path_in_errors: a refused file's error message starts with its path (as the CLI's
            batch expects); False says "input file" instead, for logs that must not quote paths
            (the bundle: archive paths carry patient names).
    """

    def __init__(self, allow_secondary_capture: bool = False, path_in_errors: bool = True) -> None:
        super().__init__()
        self.allow_secondary_capture = bool(allow_secondary_capture)
        self.path_in_errors = bool(path_in_errors)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        names = ensure_tuple(filename)
        if len(names) != 1:
            return False
        name = os.path.basename(os.fspath(names[0])).lower()
        suffix = os.path.splitext(name)[1]
        return name.endswith(RADIOGRAPH_SUFFIXES) or suffix == "" or suffix[1:].isdigit()

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, fmt: str | None = None, **kwargs: Any):
        """The decoded file (:func:`~monai_prichexy.data.decode.decode_radiograph`): a
        :class:`~monai_prichexy.dicom.Radiograph` or a :class:`~monai_prichexy.formats.ImageFile`.

        ``fmt``: the format when the caller detected it already (:func:`~monai_prichexy.formats.detect_format`).
        """
        names = ensure_tuple(data)
        if len(names) != 1:
            raise ValueError(f"RadiographReader reads one 2D radiograph at a time, got {len(names)} files")
        try:
            return decode_radiograph(names[0], fmt, allow_secondary_capture=self.allow_secondary_capture)
        except ValueError as err:
            from ..dicom.errors import UnsupportedDicomError  # not before: pydicom only when a DICOM file is read

            if isinstance(err, (UnsupportedDicomError, UnsupportedImageError)):
                raise self._refusal(err) from None
            raise

    def _refusal(self, err):
        """``err`` as is, or (``path_in_errors=False``) the same refusal without the path."""
        if self.path_in_errors:
            return err
        anonymous = type(err)(None, err.reason)
        anonymous.args = (f"input file: {err.reason}",)
        return anonymous

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """``(rows, columns)`` native values and a meta dict without PHI (see the module docstring)."""
        if isinstance(img, (list, tuple)):
            if len(img) != 1:
                raise ValueError("RadiographReader reads one 2D radiograph at a time")
            img = img[0]
        return radiograph_data(img)
