"""``prepare_batch`` callables that turn dataset dicts into network inputs for MONAI engines.

MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` call ``prepare_batch(batch, device,
non_blocking, **kwargs)`` and accept ``(inputs, targets)`` or ``(inputs, targets, args,
kwargs)``; the network is then called as ``network(inputs, *args, **kwargs)``. MONAI's
``MetaTensor`` is dropped here so that losses and metrics see plain tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..data.keys import BatchKeys
from .utils import plain

__all__ = ["ImageLabelBatch", "ReconstructionBatch", "PairBatch"]


class ImageLabelBatch:
    """``{"image", "label"}`` -> ``(image, label)`` (classifier pre-training).

    Args:
        anonymizer: optional callable applied to the image (no gradient), e.g. to evaluate the
            original classifier on anonymized images.
    """

    def __init__(self, anonymizer: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.anonymizer = anonymizer

    def __call__(self, batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False, **_: Any):
        image = plain(batch[BatchKeys.IMAGE], device, non_blocking)
        if self.anonymizer is not None:
            with torch.no_grad():
                image = self.anonymizer(image)
        return image, plain(batch[BatchKeys.LABEL], device, non_blocking)


class ReconstructionBatch:
    """``{"image"}`` -> ``(image, image)`` (generator pre-training: MSE(warp(x), x))."""

    def __call__(self, batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False, **_: Any):
        image = plain(batch[BatchKeys.IMAGE], device, non_blocking)
        return image, image


class PairBatch:
    """``{"image1", "image2", "label"}`` -> ``(image1, label, (image2,), {})`` for the Siamese network.

    Args:
        anonymize1: optional callable applied to ``image1`` (no gradient).
        anonymize2: optional callable applied to ``image2`` (no gradient). The attack trains with
            both set (both images anonymized) and tests with ``anonymize1`` only (anonymized vs real).
    """

    def __init__(
        self,
        anonymize1: Callable[[torch.Tensor], torch.Tensor] | None = None,
        anonymize2: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.anonymize1 = anonymize1
        self.anonymize2 = anonymize2

    def __call__(self, batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False, **_: Any):
        x1 = plain(batch[BatchKeys.IMAGE1], device, non_blocking)
        x2 = plain(batch[BatchKeys.IMAGE2], device, non_blocking)
        with torch.no_grad():
            if self.anonymize1 is not None:
                x1 = self.anonymize1(x1)
            if self.anonymize2 is not None:
                x2 = self.anonymize2(x2)
        label = plain(batch[BatchKeys.LABEL], device, non_blocking).float().reshape(-1, 1)
        return x1, label, (x2,), {}
