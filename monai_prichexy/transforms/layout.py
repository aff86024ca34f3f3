"""Radiograph layout transforms: one grayscale channel, rows first (MONAI reader output -> the pixel layout).

Used by every input path (training data, bundle, README chain) so that the networks see the
radiograph as ``numpy.asarray`` of the file and pydicom's ``pixel_array`` give it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, SqueezeDim, Transform
from monai.utils import TransformBackends

from .meta import RADIOGRAPH_FORMAT

__all__ = [
    "RowsFirst",
    "RowsFirstD",
    "RowsFirstDict",
    "RowsFirstd",
    "ToGrayscale",
    "ToGrayscaleD",
    "ToGrayscaleDict",
    "ToGrayscaled",
]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def _photometric(img) -> str:
    """PhotometricInterpretation from pydicom-style metadata.

    ITK's key ``0028|0004`` is deliberately not read: GDCM (ITK >= 5.3) already returns
    MONOCHROME1 pixels inverted to MONOCHROME2 while keeping the original tag value.
    """
    meta = getattr(img, "meta", None) or {}
    for key in ("00280004", "PhotometricInterpretation"):
        val = meta.get(key)
        if isinstance(val, Mapping):  # pydicom JSON: {"vr": "CS", "Value": ["MONOCHROME1"]}
            val = (val.get("Value") or [""])[0]
        if val is not None:
            return str(val).strip().upper()
    return ""


class ToGrayscale(Transform):
    """Channel-first image ``(C, ...)`` to one grayscale channel ``(1, ...)``.

    RGB and RGBA (some ChestX-ray14 PNGs are RGBA) use the ITU-R BT.601 luma, as PIL's
    ``convert("L")``; alpha is ignored; 2 channels (gray + alpha) keep the first. DICOM
    ``MONOCHROME1`` images come out with bone bright: ITK (the default DICOM reader) inverts them
    itself; with ``PydicomReader(prune_metadata=False)`` this transform inverts them.

    Args:
        invert_monochrome1: invert images whose metadata says ``MONOCHROME1``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, invert_monochrome1: bool = True) -> None:
        self.invert_monochrome1 = invert_monochrome1

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not isinstance(img, torch.Tensor):
            img = torch.as_tensor(np.asarray(img))
        c = img.shape[0]
        if c in (3, 4):
            w = torch.tensor(_LUMA, dtype=torch.float32, device=img.device).view(3, *([1] * (img.ndim - 1)))
            out = (img[:3].float() * w).sum(0, keepdim=True)
        elif c in (1, 2):
            out = img[:1]
        else:
            raise ValueError(f"expected 1-4 channels (gray, gray+alpha, RGB, RGBA), got shape {tuple(img.shape)}")
        if self.invert_monochrome1 and _photometric(img) == "MONOCHROME1":
            out = out.max() + out.min() - out
        return out


class ToGrayscaled(MapTransform):
    """Dictionary version of :class:`ToGrayscale`."""

    backend = ToGrayscale.backend

    def __init__(self, keys: KeysCollection, invert_monochrome1: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToGrayscale(invert_monochrome1)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class RowsFirst(Transform):
    """MONAI's ``(C, x, y)`` spatial order to ``(C, rows, columns)``.

    MONAI's readers return the first spatial axis along the image width (x). This swaps the two
    spatial axes (and the affine's columns) so that the array matches ``numpy.asarray`` of the
    PIL image and pydicom's ``pixel_array``. A trailing singleton axis (ITK reads a 2D DICOM as
    ``(x, y, 1)``) is squeezed first; ``spatial_shape`` in the meta dict is updated to match.
    An image read by :class:`~monai_prichexy.data.RadiographReader` is rows first already and
    passes unchanged (so one chain serves both kinds of reader).

    Raises:
        ValueError: for a true 3D volume.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if isinstance(img, MetaTensor) and RADIOGRAPH_FORMAT in img.meta:
            return img
        while img.ndim > 3 and img.shape[-1] == 1:
            img = SqueezeDim(dim=-1, update_meta=True)(img)
        if img.ndim != 3:
            raise ValueError(f"expected a 2D radiograph (C, x, y), got shape {tuple(img.shape)}")
        out = img.transpose(1, 2).contiguous()
        if isinstance(out, MetaTensor):
            aff = out.affine.clone()
            aff[:, [0, 1]] = aff[:, [1, 0]]
            out.affine = aff
            out.meta["spatial_shape"] = np.asarray(out.shape[1:])  # SaveImage reads it
        return out


class RowsFirstd(MapTransform):
    """Dictionary version of :class:`RowsFirst`."""

    backend = RowsFirst.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RowsFirst()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


ToGrayscaleD = ToGrayscaleDict = ToGrayscaled
RowsFirstD = RowsFirstDict = RowsFirstd
