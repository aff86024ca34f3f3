"""Stage 1: pre-training the abnormality classifier C (BCE with logits over the 14 labels).

Packhäuser et al., MICCAI 2023: C is trained on real images; its validation mean AUC over the
14 findings selects the checkpoint (or the validation loss, ``select="val_loss"``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from ignite.metrics import Loss
from monai.handlers import from_engine
from torch import nn

from ..metrics import MeanAUC
from .batches import ImageLabelBatch
from .stage import TrainingStage, build_supervised_stage, prepare_network
from .utils import build_optimizer, resolve_device

__all__ = ["create_classifier_stage"]


def create_classifier_stage(
    network: nn.Module,
    train_loader: Any,
    val_loader: Any,
    max_epochs: int = 30,
    lr: float = 1e-4,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    select: str = "val_mean_auc",
    patience: int | None = None,
    meta: dict[str, Any] | None = None,
    sync_bn: bool = True,
    progress: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
    amp: bool = False,
) -> TrainingStage:
    """Classifier pre-training as a MONAI ``SupervisedTrainer`` with a ``SupervisedEvaluator``.

    Args:
        network: an :class:`~monai_prichexy.networks.AbnormalityClassifier` (14 logits).
        train_loader, val_loader: loaders of ``{"image", "label"}`` batches.
        max_epochs: epochs.
        lr, optimizer, weight_decay: see :func:`~monai_prichexy.engines.utils.build_optimizer`.
        device: ``"cpu"`` or ``"cuda"``.
        ckpt_path: where the best checkpoint goes (``monai_prichexy`` format).
        select: ``"val_mean_auc"`` (highest kept) or ``"val_loss"`` (lowest kept).
        patience: early stopping on the validation loss (None = off).
        meta: extra checkpoint meta (data, seed, ...).
        sync_bn: SyncBatchNorm in distributed GPU runs.
        progress: Ignite progress bar.
        tensorboard_dir: TensorBoard log folder (None = off).
        amp: automatic mixed precision (GPU).
    """
    if select not in ("val_mean_auc", "val_loss"):
        raise ValueError(f"select must be 'val_mean_auc' or 'val_loss', got {select!r}")
    device = resolve_device(device)
    network = prepare_network(network, device, sync_bn)
    opt = build_optimizer(network.parameters(), optimizer, lr, weight_decay=weight_decay)
    loss = nn.BCEWithLogitsLoss()
    pred_label = from_engine(["pred", "label"])
    metrics = {
        "val_mean_auc": MeanAUC(output_transform=pred_label),
        "val_loss": Loss(nn.BCEWithLogitsLoss(), output_transform=pred_label),
    }
    return build_supervised_stage(
        "classifier_pretrain", network, train_loader, val_loader, loss, ImageLabelBatch(), metrics, select,
        "max" if select == "val_mean_auc" else "min", device, max_epochs, opt, ckpt_path=ckpt_path,
        meta={"lr": lr, "optimizer": optimizer, **(meta or {})}, patience=patience, patience_metric="val_loss",
        progress=progress, tensorboard_dir=tensorboard_dir, amp=amp,
    )
