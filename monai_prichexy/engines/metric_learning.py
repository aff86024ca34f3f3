"""Training the metric-learning attacker: an embedding trained over patient ids.

A MONAI ``SupervisedTrainer`` whose network is an :class:`~monai_prichexy.networks.EmbeddingNet`
and whose loss is the supervised-contrastive loss (Khosla et al., NeurIPS 2020) of
``pytorch-metric-learning`` over the patient ids of a batch; batches hold ``m`` images of
each patient (``MPerClassSampler``), so every batch has positives. Only patients with at least
two training images can teach it anything and only they are sampled. Validation: the
verification AUC of the cosine similarity on (anonymized, real) validation pairs, the test
protocol of the attack.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from monai.handlers import from_engine
from monai.utils import CommonKeys
from pytorch_metric_learning.losses import SupConLoss
from pytorch_metric_learning.samplers import MPerClassSampler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.keys import BatchKeys
from ..metrics import VerificationAUC
from .batches import PairBatch
from .stage import TrainingStage, build_supervised_stage, prepare_network
from .utils import build_optimizer, plain, resolve_device

__all__ = ["PatientBatch", "patient_codes", "metric_train_loader", "create_metric_stage"]


class PatientBatch:
    """``{"image", "patient"}`` -> ``(image, patient code)``, with an optional augmentation of the image."""

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.augment = augment

    def __call__(self, batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False, **_: Any):
        image = plain(batch[BatchKeys.IMAGE], device, non_blocking)
        if self.augment is not None:
            with torch.no_grad():
                image = self.augment(image)
        return image, plain(batch[BatchKeys.PATIENT], device, non_blocking).long()


def patient_codes(patient_ids: np.ndarray, min_images: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of patient ids, and the indices of images whose patient has >= ``min_images`` images."""
    _, codes, counts = np.unique(patient_ids, return_inverse=True, return_counts=True)
    keep = np.flatnonzero(counts[codes] >= min_images)
    return codes.astype(np.int64), keep


def metric_train_loader(dataset: Dataset, codes: np.ndarray, batch_size: int = 64, m_per_patient: int = 2) -> DataLoader:
    """Batches of ``batch_size`` images, ``m_per_patient`` of each patient (``MPerClassSampler``), about one pass per epoch."""
    if batch_size % m_per_patient:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of m_per_patient ({m_per_patient})")
    n_patients = len(np.unique(codes))
    if n_patients * m_per_patient < batch_size:
        batch_size = max(m_per_patient, (n_patients * m_per_patient) // m_per_patient * m_per_patient)
    sampler = MPerClassSampler(codes, m=m_per_patient, batch_size=batch_size, length_before_new_iter=len(codes))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)


class _SupCon(nn.Module):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.loss = SupConLoss(temperature=temperature)

    def forward(self, embeddings: torch.Tensor, patients: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, patients)


def create_metric_stage(
    network: nn.Module,
    train_loader: Any,
    val_loader: Any,
    max_epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    temperature: float = 0.1,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    select: str = "last",
    meta: dict[str, Any] | None = None,
    name: str = "metric_attack",
    progress: bool = True,
) -> TrainingStage:
    """The metric-learning attacker's training stage.

    Args:
        network: an :class:`~monai_prichexy.networks.EmbeddingNet`.
        train_loader: ``{"image", "patient"}`` batches (see :func:`metric_train_loader`).
        val_loader: ``{"image1", "image2", "label"}`` pair batches (anonymized, real).
        max_epochs, lr, weight_decay: AdamW training.
        temperature: of the supervised-contrastive loss.
        augment: optional batch augmentation applied to training images.
        select: ``"last"`` (a fixed budget, default) or ``"val_auc"`` (best validation AUC kept).
        device, ckpt_path, meta, name, progress: as for the other stages.
    """
    if select not in ("last", "val_auc"):
        raise ValueError(f"select must be 'last' or 'val_auc', got {select!r}")
    device = resolve_device(device)
    network = prepare_network(network, device)
    opt = build_optimizer(network.parameters(), "adamw", lr, weight_decay=weight_decay)
    metrics = {"val_auc": VerificationAUC(output_transform=from_engine([CommonKeys.PRED, CommonKeys.LABEL]))}
    return build_supervised_stage(
        name, network, train_loader, val_loader, _SupCon(temperature), PatientBatch(augment), metrics, "val_auc",
        "last" if select == "last" else "max", device, max_epochs, opt, ckpt_path=ckpt_path,
        meta={"lr": lr, "weight_decay": weight_decay, "temperature": temperature, "select": select, **(meta or {})},
        val_prepare_batch=PairBatch(), progress=progress,
    )
