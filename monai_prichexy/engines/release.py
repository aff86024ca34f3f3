"""An anonymized data release held in memory: what the attackers train on and are tested with.

The evaluation protocol (Packhäuser et al., MICCAI 2023) trains a fresh attacker on anonymized
images and tests it on (anonymized, real) test pairs. A data steward releases each image once:
:func:`anonymize_images` applies the anonymizer once per image (one draw per image for random
anonymizers, seeded), so every attacker of a row trains and is tested on the same release, and
the anonymizer runs once instead of once per attacker epoch.

:class:`SplitImages` holds one split's preprocessed images (``(N, 1, H, W)`` float32 in [0, 1])
with their labels and patient ids, read once through the data module's loader. This is for
benchmark-sized data (the project's subsets: 1,050 and 5,824 images); the training stages
themselves stream images lazily from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.keys import BatchKeys
from .utils import plain

__all__ = ["SplitImages", "load_split_images", "anonymize_images", "TensorPairDataset", "TensorImageDataset"]


@dataclass
class SplitImages:
    """One split in memory.

    Attributes:
        images: ``(N, 1, H, W)`` float32 in [0, 1].
        labels: ``(N, C)`` float32 label vectors.
        patient_ids: ``(N,)`` patient ids (strings; never written anywhere).
        names: file names, in the same order (for pair indexing).
    """

    images: torch.Tensor
    labels: torch.Tensor
    patient_ids: np.ndarray
    names: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.names) or len(self.labels) != len(self.names) or len(self.patient_ids) != len(self.names):
            raise ValueError("images, labels, patient ids and names must have the same length")
        self.index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def with_images(self, images: torch.Tensor) -> SplitImages:
        """The same split with other images (e.g. the anonymized release)."""
        if images.shape[0] != len(self):
            raise ValueError(f"expected {len(self)} images, got {images.shape[0]}")
        return SplitImages(images, self.labels, self.patient_ids, self.names)

    def pair_indices(self, pairs: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i1, i2, same)`` index arrays of verification pairs ``(image1, image2, label)``."""
        i1 = np.array([self.index[p[0]] for p in pairs], dtype=np.int64)
        i2 = np.array([self.index[p[1]] for p in pairs], dtype=np.int64)
        same = np.array([int(p[2]) for p in pairs], dtype=np.int64)
        return i1, i2, same


@torch.no_grad()
def load_split_images(data, split: str, batch_size: int = 64) -> SplitImages:
    """Read every image of ``split`` once through ``data.image_loader`` (a :class:`DataModule`)."""
    images, labels = [], []
    for batch in data.image_loader(split, batch_size, shuffle=False):
        images.append(plain(batch[BatchKeys.IMAGE]).float().cpu())
        labels.append(plain(batch[BatchKeys.LABEL]).float().cpu())
    records = data.records(split)
    if not images:
        raise ValueError(f"split {split!r} has no images")
    return SplitImages(torch.cat(images), torch.cat(labels), np.array([r.patient_id for r in records]),
                       [r.image for r in records])


@torch.no_grad()
def anonymize_images(
    anonymizer: nn.Module | None, images: torch.Tensor, batch_size: int = 64, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Apply ``anonymizer`` once to every image (eval mode), in batches; None returns ``images``."""
    if anonymizer is None:
        return images
    device = torch.device(device)
    was_training = anonymizer.training
    anonymizer.eval()
    try:
        out = [anonymizer(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        anonymizer.train(was_training)
    return torch.cat(out).clamp_(0.0, 1.0)


class TensorImageDataset(Dataset):
    """``{"image", "label"}`` items from in-memory images (optionally with ``"patient"`` integer codes)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, patients: np.ndarray | None = None) -> None:
        self.images, self.labels = images, labels
        self.patients = None if patients is None else torch.as_tensor(patients, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {BatchKeys.IMAGE: self.images[i], BatchKeys.LABEL: self.labels[i]}
        if self.patients is not None:
            item[BatchKeys.PATIENT] = self.patients[i]
        return item


class TensorPairDataset(Dataset):
    """Verification pairs ``{"image1", "image2", "label"}`` from in-memory images.

    ``image1`` comes from ``first`` and ``image2`` from ``second`` (the same tensor for pairs of
    two anonymized images; anonymized and real for the test protocol).
    """

    def __init__(
        self, first: torch.Tensor, second: torch.Tensor, i1: np.ndarray, i2: np.ndarray, same: np.ndarray,
        labels1: torch.Tensor | None = None,
    ) -> None:
        self.first, self.second = first, second
        self.i1, self.i2 = torch.as_tensor(i1), torch.as_tensor(i2)
        self.same = torch.as_tensor(same, dtype=torch.float32).reshape(-1, 1)
        self.labels1 = labels1

    def __len__(self) -> int:
        return len(self.i1)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        item = {
            BatchKeys.IMAGE1: self.first[self.i1[k]],
            BatchKeys.IMAGE2: self.second[self.i2[k]],
            BatchKeys.LABEL: self.same[k],
        }
        if self.labels1 is not None:
            item[BatchKeys.LABELS1] = self.labels1[self.i1[k]]
        return item
