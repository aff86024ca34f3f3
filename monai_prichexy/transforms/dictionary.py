"""Dictionary transforms: ``DeformAnonymized`` and ``DPPixd`` (MONAI style)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends
from torch import nn

from .array import DeformAnonymize, DPPix
from .meta import strip_phi_meta

__all__ = [
    "DeformAnonymized",
    "DeformAnonymizeD",
    "DeformAnonymizeDict",
    "DPPixd",
    "DPPixD",
    "DPPixDict",
]


def _strip_meta_dicts(d: dict, key: Hashable, meta_key_postfix: str, name_key) -> None:
    """Sanitize a legacy ``{key}_{postfix}`` meta dict (``image_only=False`` readers) in place."""
    meta_key = f"{key}_{meta_key_postfix}"
    if isinstance(d.get(meta_key), Mapping):
        d[meta_key] = strip_phi_meta(d[meta_key], name_key)
    d.pop(f"{key}_transforms", None)


class DeformAnonymized(MapTransform):
    """Dictionary version of :class:`DeformAnonymize`.

    Args:
        keys: keys of the images to anonymize.
        generator, mu, smoothing, working_size, device, expected_sha256, strip_meta, name_key:
            as in :class:`DeformAnonymize`.
        meta_key_postfix: postfix of legacy meta dicts, sanitized when ``strip_meta``.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = DeformAnonymize.backend

    def __init__(
        self,
        keys: KeysCollection,
        generator: nn.Module | str | os.PathLike,
        mu: float | None = None,
        smoothing: str | None = None,
        working_size: int | Sequence[int] | None = None,
        device: str | torch.device | None = None,
        expected_sha256: str | None = None,
        strip_meta: bool = True,
        name_key: bytes | str | None = None,
        meta_key_postfix: str = "meta_dict",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.anonymizer = DeformAnonymize(
            generator, mu, smoothing, working_size, device, expected_sha256, strip_meta, name_key
        )
        self.meta_key_postfix = meta_key_postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.anonymizer(d[key])
            if self.anonymizer.strip_meta:
                _strip_meta_dicts(d, key, self.meta_key_postfix, self.anonymizer.name_key)
        return d


class DPPixd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`DPPix`; all keys get independent noise from one generator."""

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection,
        b: int = 1,
        m: float = 1.0,
        eps: float = 0.1,
        intensity_range: Sequence[float] = (0.0, 1.0),
        prob: float = 1.0,
        strip_meta: bool = True,
        name_key: bytes | str | None = None,
        meta_key_postfix: str = "meta_dict",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.pixelizer = DPPix(b, m, eps, intensity_range, prob=1.0, strip_meta=strip_meta, name_key=name_key)
        self.meta_key_postfix = meta_key_postfix

    def set_random_state(self, seed: int | None = None, state=None) -> DPPixd:
        super().set_random_state(seed, state)
        self.pixelizer.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.pixelizer(d[key], randomize=True)
            if self.pixelizer.strip_meta:
                _strip_meta_dicts(d, key, self.meta_key_postfix, self.pixelizer.name_key)
        return d


DeformAnonymizeD = DeformAnonymizeDict = DeformAnonymized
DPPixD = DPPixDict = DPPixd
