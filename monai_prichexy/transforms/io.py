"""``SaveRadiographd``: write deformed native values in the input's own format and bit depth.

The counterpart of :class:`~monai_prichexy.data.RadiographReader`: PNG / JPEG / TIFF / NIfTI are
written by :func:`monai_prichexy.formats.write_image` (same format, bit depth and NIfTI geometry,
atomically, no metadata copied); DICOM by :func:`monai_prichexy.dicom.write_radiograph`, which
de-identifies the header under a key (PS3.15 Annex E, keyed UIDs) -- the header is read again
from the source file for that, since no header value ever travels in the meta dict. The output
path comes from the data dict (a relative path under ``output_dir``, e.g. the keyed pseudonym
the bundle's datalist gives each file), never from the input's name.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path, PurePosixPath

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform

from ..formats import ImageFile, write_image
from .meta import RADIOGRAPH_DTYPE, RADIOGRAPH_FORMAT, RADIOGRAPH_WRITE_INFO

__all__ = ["SaveRadiographd", "SaveRadiographD", "SaveRadiographDict"]


def _safe_relpath(rel) -> PurePosixPath:
    rel = PurePosixPath(os.fspath(rel))
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise ValueError(f"output path must be relative and inside the output folder, got {str(rel)!r}")
    return rel


class SaveRadiographd(MapTransform):
    """Write each image of ``keys`` to ``output_dir / d[output_key]`` in its input format.

    The image must be the ``(1, rows, columns)`` native values of a file read by
    :class:`~monai_prichexy.data.RadiographReader` (its meta dict says the format, dtype and
    writer settings); values are written as they are, in the stored dtype.

    Args:
        keys: keys of the images to save.
        output_dir: the output folder (created when missing).
        output_key: key of the relative output path (with its suffix) in the data dict.
        source_key: key of the input file's path (read again for a DICOM header only).
        deid: :class:`~monai_prichexy.dicom.DeidConfig` (with the key) for DICOM outputs; without
            it a DICOM image is refused.
        allow_secondary_capture: as :class:`~monai_prichexy.data.RadiographReader`.
        jpeg_quality: quality of re-encoded JPEG outputs.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        output_key: str = "output",
        source_key: str = "source",
        deid=None,
        allow_secondary_capture: bool = False,
        jpeg_quality: int = 95,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_dir is None or not os.fspath(output_dir):
            raise ValueError("output_dir is required")
        self.output_dir = Path(output_dir)
        self.output_key, self.source_key = output_key, source_key
        self.deid = deid
        self.allow_secondary_capture = bool(allow_secondary_capture)
        self.jpeg_quality = int(jpeg_quality)

    def save(self, img: NdarrayOrTensor, dst: Path, source=None) -> Path:
        """Write one ``(1, rows, columns)`` image to ``dst``."""
        meta = img.meta if isinstance(img, MetaTensor) else {}
        fmt = meta.get(RADIOGRAPH_FORMAT)
        if fmt is None:
            raise ValueError("SaveRadiographd needs an image read by monai_prichexy.data.RadiographReader")
        values = img.as_tensor() if isinstance(img, MetaTensor) else img
        values = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
        if values.ndim != 3 or values.shape[0] != 1:
            raise ValueError(f"expected (1, rows, columns), got {values.shape}")
        values = values[0]
        dtype = np.dtype(meta[RADIOGRAPH_DTYPE])
        if values.dtype != dtype:  # MONAI holds uint16 as int32: exact values are cast back, nothing else
            cast = values.astype(dtype)
            if not np.array_equal(cast, values):
                raise ValueError(
                    f"values are {values.dtype}, not exactly {dtype} as stored: load with LoadImaged(dtype=None)"
                )
            values = cast
        dst.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "dicom":
            if self.deid is None:
                raise ValueError("DICOM output needs a de-identification key (DeidConfig): set key_file")
            if source is None:
                raise ValueError(f"DICOM output needs the source file's path under {self.source_key!r}")
            from ..dicom import read_radiograph, write_radiograph

            rad = read_radiograph(source, allow_secondary_capture=self.allow_secondary_capture)
            if rad.stored.shape != values.shape:
                raise ValueError(f"the source now has shape {rad.stored.shape}, the image {values.shape}")
            rad.view = None
            write_radiograph(rad, values, dst, deid=self.deid)
        else:
            template = ImageFile(fmt, np.broadcast_to(np.zeros((), dtype), values.shape), dict(meta.get(RADIOGRAPH_WRITE_INFO) or {}))
            write_image(template, values, dst, jpeg_quality=self.jpeg_quality)
        return dst

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            rel = _safe_relpath(d[self.output_key])
            self.save(d[key], self.output_dir / rel, d.get(self.source_key))
        return d


SaveRadiographD = SaveRadiographDict = SaveRadiographd
