"""``NetworkView``: the one network view of a radiograph, float32 in [0, 1], bone bright.

What PriCheXy-Net's generator (and the report's verifier / classifier) see of an image of native
values: for DICOM read by :class:`~monai_prichexy.data.RadiographReader`, the reader's view table
(Modality LUT, VOI LUT or window, MONOCHROME1 inverted); for every other image, the values
min-max scaled. :class:`~monai_prichexy.transforms.DeformAnonymize` computes its view with
:func:`network_view`, so the chain ``LoadImaged(reader=RadiographReader(), dtype=None) ->
EnsureChannelFirstd -> DeformAnonymized`` deforms a file exactly as the CLI does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from .functional import network_view
from .meta import RADIOGRAPH_DTYPE, RADIOGRAPH_META_KEYS, RADIOGRAPH_VIEW_LUT

__all__ = [
    "NetworkView",
    "NetworkViewD",
    "NetworkViewDict",
    "NetworkViewd",
    "network_view",
    "stored_values",
    "view_lut_of",
]


def stored_values(img, values: torch.Tensor | None = None) -> torch.Tensor:
    """``img``'s values in the file's stored dtype when the reader recorded it (MONAI holds
    ``uint16`` as ``int32``), so that they are deformed with the arithmetic of that dtype."""
    values = torch.as_tensor(img.as_tensor() if isinstance(img, MetaTensor) else img) if values is None else values
    meta = getattr(img, "meta", None)
    name = meta.get(RADIOGRAPH_DTYPE) if isinstance(meta, Mapping) else None
    if name is None:
        return values
    dtype = torch.from_numpy(np.zeros(0, dtype=np.dtype(name))).dtype
    return values if values.dtype == dtype else values.to(dtype)


def view_lut_of(img) -> np.ndarray | None:
    """The reader's ``(2, K)`` view table of a MetaTensor (None when there is none)."""
    meta = getattr(img, "meta", None)
    lut = meta.get(RADIOGRAPH_VIEW_LUT) if isinstance(meta, Mapping) else None
    return None if lut is None else np.asarray(lut, dtype=np.float64)


class NetworkView(Transform):
    """Channel-first native values ``(1, H, W)`` -> their network view, float32 in [0, 1].

    Uses the :class:`~monai_prichexy.data.RadiographReader` view table of DICOM files when the
    image carries one (apply it before resampling: it maps stored values), else min-max.
    A MetaTensor keeps its meta dict, less the reader's keys (format, dtype, value range, view
    table, writer settings), which describe stored values, not a view.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        view = network_view(stored_values(img), view_lut_of(img))
        if isinstance(img, MetaTensor):  # a view, no longer the stored values: the reader's keys go
            meta = {k: v for k, v in img.meta.items() if k not in RADIOGRAPH_META_KEYS}
            return MetaTensor(view, meta=meta, applied_operations=list(img.applied_operations))
        return view


class NetworkViewd(MapTransform):
    """Dictionary version of :class:`NetworkView`."""

    backend = NetworkView.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = NetworkView()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


NetworkViewD = NetworkViewDict = NetworkViewd
